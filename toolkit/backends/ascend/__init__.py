"""Huawei Ascend 310 / 310P through CANN: atc conversion, AIPP, AMCT INT8, ais_bench inference."""

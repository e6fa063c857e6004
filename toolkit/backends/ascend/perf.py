"""Performance files the Ascend tools write: benchmark's perf_vision_batchsize_<bs>_device_<id>.txt
and ais_bench's <output_dirname>_summary.json. Card throughput = chip throughput x chips per card."""

from __future__ import annotations

import re
from pathlib import Path

from toolkit import reading
from toolkit.backends.base import ToolFigures
from toolkit.errors import InputError

_LINE = re.compile(r"^\[(?P<stage>[^\]]+)\]\s*(?P<rest>.*)$")
_FIELD = re.compile(r"(?P<key>[A-Za-z][A-Za-z ]*?)\s*:\s*(?P<value>[-+0-9.eE]+)")
STAGE_NAMES = {"inference": "infer", "postprocess": "post"}  # the spellings some versions use


def read_benchmark_perf(path: Path) -> dict[str, dict[str, float]]:
    """`[infer] throughputRate: 33.4556, Interface throughputRate: 91.86, moduleLatency: 29.2697` -> nested dict."""
    if not path.is_file():
        raise InputError(f"{path}: no such benchmark performance file")
    stages: dict[str, dict[str, float]] = {}
    for line in reading.read_text(path).splitlines():
        found = _LINE.match(line.strip())
        if not found:
            continue
        stage = STAGE_NAMES.get(found["stage"].strip(), found["stage"].strip())
        stages[stage] = {m["key"].strip(): float(m["value"]) for m in _FIELD.finditer(found["rest"])}
    if "Interface throughputRate" not in stages.get("infer", {}):
        raise InputError(f"{path}: no `[infer] ... Interface throughputRate: N` line (not a benchmark perf file?)")
    return stages


def read_ais_summary(path: Path) -> dict:
    """NPU compute time (ms: min, max, mean, median, P99, count), H2D / D2H latency and throughput."""
    raw = reading.read_json(path, dict, what="ais_bench summary")
    if "throughput" not in raw or "NPU_compute_time" not in raw:
        raise InputError(f"{path}: no throughput / NPU_compute_time (not an ais_bench summary?)")
    return {"throughput": float(raw["throughput"]), "npu_compute_ms": raw["NPU_compute_time"],
            "h2d_ms": raw.get("H2D_latency"), "d2h_ms": raw.get("D2H_latency")}


def card_throughput(tool: str, chip_images_per_s: float, chips_per_card: int, details: dict) -> ToolFigures:
    """The card's figure as the guide reports it (91.86 x 4 = 367.44 on an Atlas 300 with 4 x Ascend 310)."""
    return ToolFigures(tool, round(chip_images_per_s * chips_per_card, 2), chips_per_card, chip_images_per_s, details)


def from_benchmark(path: Path, chips_per_card: int) -> ToolFigures:
    stages = read_benchmark_perf(path)
    return card_throughput("benchmark", stages["infer"]["Interface throughputRate"], chips_per_card, {"stages": stages})


def from_ais_bench(path: Path, chips_per_card: int) -> ToolFigures:
    summary = read_ais_summary(path)
    return card_throughput("ais_bench", summary["throughput"], chips_per_card, summary)

"""NNCF's post-training quantisation of an ONNX model into a Q/DQ file (its default preset: symmetric INT8): for
OpenVINO in NNCF's own placement with its fast bias correction, and for a device's explicit quantization (TensorRT)
with the pairs kept on the chosen op types' inputs only, in INT8, with NNCF's ranges alone. Its pairs take ONNX
Runtime's tensor names, so that the toolkit's sensitivity (qdq_loss_debug) matches them to the float model as it
does ONNX Runtime's."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.backends.equalise import equalised, record
from toolkit.backends.ort_quant import float_inputs, matching_nodes
from toolkit.calibration import CalibrationSet
from toolkit.errors import ToolkitError, Unavailable

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
Q_OUTPUT_SUFFIX = "_QuantizeLinear_Output"  # ONNX Runtime's (quant_utils names the DequantizeLinear's only)
INT8_OVER_UINT8 = 255 / 127  # the scale that spans an unsigned pair's range in signed INT8


def quantize(fp32: Path, calib: CalibrationSet, keep_float: list[str], out: Path, op_types: tuple[str, ...] = (),
             signed: bool = False, equalise: bool = False) -> Path:
    """The Q/DQ model over the calibration set, the nodes `keep_float` names (fnmatch patterns) left in float.
    `op_types`: a device's placement (`_for_a_device`), the pairs kept where these op types read them (every other
    node and every held one reads the float tensor); `signed`: the unsigned pairs NNCF gives non-negative
    activations re-expressed in INT8 over the same range; `equalise`: the depthwise convolutions' inputs first
    scaled to one range (equalise.py; the factors recorded in the model)."""
    if importlib.util.find_spec("nncf") is None:
        raise Unavailable("calibration method 'nncf' needs NNCF: pip install -e '.[openvino]' (or '.[tensorrt]')")
    import nncf
    import onnx

    nncf.set_log_level(logging.WARNING)  # not a line per node it leaves unquantised
    model = onnx.load(str(fp32))
    factors = None
    if equalise:
        model, factors = equalised(model, calib.batches())
    name = model.graph.input[0].name
    images = [{name: image[None]} for batch in calib.batches() for image in batch]
    held = matching_nodes(fp32, keep_float) if keep_float else []
    quantised = nncf.quantize(
        model, nncf.Dataset(images), subset_size=len(images),
        ignored_scope=nncf.IgnoredScope(names=held, validate=False) if held else None,
        advanced_parameters=_for_a_device() if op_types else None)
    if op_types:
        readers = {n.name for n in quantised.graph.node if n.op_type not in (*op_types, *QDQ_OPS) or n.name in held}
        quantised = float_inputs(quantised, readers)
    if signed:
        _as_int8(quantised)
    _ort_names(quantised)
    if factors is not None:
        record(quantised, factors)
    return fileio.write_with(out, lambda tmp: onnx.save(quantised, str(tmp)))


def _for_a_device():
    """Every weight on the full INT8 range (NNCF's overflow fix is for x86 VNNI); one scale per activation tensor
    (NNCF's default quantises a depthwise convolution's input per channel, which OpenVINO runs and TensorRT's
    parser refuses: "Activations-quantization does not support per-axis quantization", onnx-tensorrt's
    onnxOpImporters.cpp at 96e7811, 10.1 GA); and NNCF's ranges without its bias correction: NNCF corrects the
    biases for its own placement and unsigned ranges, which the device's pairs then change; on t4-int8 it lost
    more with the correction than without (docs/results.md)."""
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, OverflowFix,
                                                       QuantizationParameters)

    return AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE, disable_bias_correction=True,
                                          activations_quantization_params=QuantizationParameters(per_channel=False))


def _as_int8(model) -> None:
    """Every unsigned symmetric pair (zero point 0) as a signed one over the same range: TensorRT takes INT8 only."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    changed: set[str] = set()
    for node in (n for n in model.graph.node if n.op_type in QDQ_OPS and len(n.input) > 2):
        zero, scale = inits[node.input[2]], inits[node.input[1]]
        if zero.data_type != TensorProto.UINT8 or zero.name in changed:
            continue
        if numpy_helper.to_array(zero).any():
            raise ToolkitError(f"NNCF quantised {node.input[0]} with an offset: not a symmetric pair INT8 can take")
        zero.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(zero).astype(np.int8), zero.name))
        if scale.name not in changed:
            scale.CopyFrom(numpy_helper.from_array(
                (numpy_helper.to_array(scale) * INT8_OVER_UINT8).astype(np.float32), scale.name))
        changed |= {zero.name, scale.name}
    del model.graph.value_info[:]  # the pairs' inferred types were UINT8


def _ort_names(model) -> None:
    """Each activation's pair renamed as ONNX Runtime names it (`X_QuantizeLinear_Output`,
    `X_DequantizeLinear_Output`, a second pair on X `..._1`), its readers rewired."""
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX

    constants = {i.name for i in model.graph.initializer}
    made_by = {out: node for node in model.graph.node for out in node.output}
    renamed: dict[str, str] = {}
    pairs_on: dict[str, int] = {}
    for dq in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        q = made_by.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in constants:
            continue
        tensor = q.input[0]
        count = pairs_on[tensor] = pairs_on.get(tensor, 0) + 1
        suffix = "" if count == 1 else f"_{count - 1}"
        for node, new in ((q, tensor + Q_OUTPUT_SUFFIX + suffix), (dq, tensor + DEQUANT_OUTPUT_SUFFIX + suffix)):
            renamed[node.output[0]] = new
            node.output[0] = new
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for output in model.graph.output:
        output.name = renamed.get(output.name, output.name)

"""Strongly typed ONNX models, TensorRT's only way to take a precision from TensorRT 11 on (10.x opts in):
the precision lives in the graph, not in builder flags.

- FP16: onnxconverter-common's float16 conversion with FP32 input and outputs; it keeps in FP32 what its
  own rules keep (its op block list) and writes FP16 initializers (weights below 1e-7 in magnitude
  become +-1e-7, its rule).
- INT8: the calibrated Q/DQ model (explicit quantization) at opset 21, whose QuantizeLinear /
  DequantizeLinear take FP16 scales, converted the same way, so its float parts run in FP16 (the form
  NVIDIA's ModelOpt writes for TensorRT: its INT8 quantizer converts to FP16 at opset 21).

`upcast` turns a typed model back into one ONNX Runtime runs on the CPU with the same numerics: every
FP16 weight exactly as deployed (upcast to FP32, which is exact), every FP16 tensor rounded to FP16
by a Cast pair; FP32 tensors stay FP32. `--mode emulate` runs that, so it emulates the deployed file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.errors import InputError

Q_DQ = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED = {"Conv": 0, "ConvTranspose": 1}  # per-channel weight axis: output channels (ConvTranspose: [C_in, C_out, ..])
QDQ_OPSET = 21  # FP16 scales on QuantizeLinear / DequantizeLinear need opset 19 or newer


def fp16_model(src: Path, dst: Path) -> dict:
    """`src` (FP32 or Q/DQ) as a typed FP16 model with FP32 I/O; returns what the converter did."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    if any(n.op_type in Q_DQ for n in model.graph.node):
        wrong = qdq_placement(model)
        if wrong:
            raise InputError(f"{src}: Q/DQ that TensorRT does not fuse: {wrong[0]}" + (f" (and {len(wrong) - 1} more)" if wrong[1:] else ""))
        model = _with_opset(model, QDQ_OPSET)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        typed = float16.convert_float_to_float16(model, keep_io_types=True)
    try:
        onnx.checker.check_model(typed, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"{src}: its FP16 conversion fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    fileio.write_bytes(dst, typed.SerializeToString())
    return {"converter": "onnxconverter-common float16 (keep_io_types)", "opset": _opset(typed),
            "fp32_nodes": fp32_nodes(typed), "weights_clamped": sum("truncated" in str(w.message) for w in raised)}


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _with_opset(model, version: int):
    """Conv, ConvTranspose, Relu, Add, Sigmoid and Q/DQ mean the same from opset 13 to 21: the version
    converter only renumbers them (and checks it)."""
    from onnx import version_converter

    return model if _opset(model) >= version else version_converter.convert_version(model, version)


def fp32_nodes(model) -> list[str]:
    """Nodes (other than the I/O casts and Q/DQ) that the typed model computes in FP32."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    return [n.name for n in inferred.graph.node if n.op_type not in ("Cast", *Q_DQ)
            and any(types.get(o) == TensorProto.FLOAT for o in n.output)]


def qdq_placement(model) -> list[str]:
    """Where a Q/DQ model breaks TensorRT's placement rules for explicit quantization, one line each:
    a QuantizeLinear feeds DequantizeLinear only; a DequantizeLinear feeds a weighted layer (Conv,
    ConvTranspose: the pair fuses into it), or beside one the residual Add it fuses with; weights are
    per-channel on the output-channel axis (ConvTranspose: axis 1, as NVIDIA's pytorch-quantization
    quantises deconvolution weights); every pair is INT8 with zero point 0 (TensorRT's DequantizeLinear
    takes INT8, so no INT32 bias); an activation's pair has one scale ("Activations-quantization does not
    support per-axis quantization": onnx-tensorrt's onnxOpImporters.cpp at 96e7811, 10.1 GA)."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wrong = []
    for node in graph.node:
        after = {c.op_type for c in consumers.get(node.output[0], [])}
        if node.op_type == "QuantizeLinear" and after != {"DequantizeLinear"}:
            wrong.append(f"{node.name} feeds {sorted(after)}")
        scale = inits.get(node.input[1]) if node.op_type == "QuantizeLinear" else None
        if scale is not None and node.input[0] not in inits and int(np.prod(scale.dims)) != 1:
            wrong.append(f"{node.name}: an activation quantised per channel ({int(np.prod(scale.dims))} scales); "
                         "TensorRT takes one scale per activation tensor")
        if node.op_type not in Q_DQ:
            continue
        if node.op_type == "DequantizeLinear" and not (after & set(WEIGHTED) and after <= {*WEIGHTED, "Add"}):
            wrong.append(f"{node.name} feeds {sorted(after)}, no weighted layer")
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any():
            wrong.append(f"{node.name}: not symmetric INT8 (TensorRT's Q/DQ: INT8, zero point 0)")
        layers = [c for c in consumers.get(node.output[0], []) if c.op_type in WEIGHTED and c.input[1] == node.output[0]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if layers and axis != WEIGHTED[layers[0].op_type]:
            wrong.append(f"{node.name}: {layers[0].op_type} weights quantised on axis {axis}, "
                         f"TensorRT takes axis {WEIGHTED[layers[0].op_type]}")
    return wrong


def upcast(typed_path: Path, dst: Path) -> Path:
    """The typed model as ONNX Runtime's CPU runs it with the same numerics (see the module docstring)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from toolkit.backends.emulation import rounded_outputs

    model = onnx.shape_inference.infer_shapes(onnx.load(str(typed_path)))
    graph = model.graph
    half = {v.name for v in graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes = []
    for node in graph.node:
        for attr in node.attribute:  # a Cast to FP16 becomes the FP32 tensor its pair then rounds
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
        nodes += [node, *rounded_outputs(node, half)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return fileio.write_bytes(dst, model.SerializeToString())

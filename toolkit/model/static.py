"""A static-shape copy of the exported ONNX (no PyTorch needed): what atc and AMCT are given per batch size."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio
from toolkit.errors import InputError


def make_static(src: Path, dst: Path, batch: int | None, height: int | None, width: int | None) -> Path:
    """Fix the input to batch x 3 x height x width (None: leave that dimension as it is), infer every
    other shape, check, write atomically. A model with operators ONNX does not define (AMCT's deploy
    model: AscendQuant / AscendDequant in the default domain, which atc registers) only gets its input
    fixed: ONNX's shape inference and checker refuse such nodes ("No Op registered"), atc checks it."""
    import onnx

    model = onnx.load(str(src))
    if len(model.graph.input) != 1 or len(model.graph.input[0].type.tensor_type.shape.dim) != 4:
        raise InputError(f"{src}: expected one NCHW input (a CenterFace export)")
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (batch, 3, height, width)):
        if value is None:
            continue
        if dim.HasField("dim_value") and dim.dim_value != value:
            raise InputError(f"{src}: input dimension {dim.dim_value} is static and is not {value}")
        dim.dim_value = value  # replaces a symbolic dim_param
    if vendor_ops(model):
        return fileio.write_bytes(dst, model.SerializeToString())
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return fileio.write_bytes(dst, model.SerializeToString())


def vendor_ops(model) -> list[str]:
    """The op types of `model` that no ONNX opset defines (a vendor's own, such as AMCT's AscendQuant)."""
    import onnx

    return sorted({n.op_type for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain or "")})

"""A static-shape copy of the exported ONNX (no PyTorch needed): what atc and AMCT are given per batch size."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio
from toolkit.errors import InputError


def make_static(src: Path, dst: Path, batch: int | None, height: int | None, width: int | None) -> Path:
    """Fix the input to batch x 3 x height x width (None: leave that dimension as it is), infer every
    other shape, check, write atomically."""
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
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return fileio.write_bytes(dst, model.SerializeToString())

"""The official ONNX as published: fixed 10x3x32x32 input, outputs named 537..540."""

from __future__ import annotations

from pathlib import Path

from toolkit.model.signature import OUTPUT_NAMES

INPUT_NAME = "input.1"
OUTPUT_IDS = ("537", "538", "539", "540")


def dynamic_model_bytes(path: Path) -> bytes:
    """The official graph with symbolic batch / height / width, so any input size runs.

    This is the rewrite every CenterFace user has to make (the file says 10x3x32x32).
    """
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("B", None, "H", "W")):
        if name:
            dim.dim_param = name
    for out in model.graph.output:
        odims = out.type.tensor_type.shape.dim
        for dim, name in zip(odims, ("B", None, "h", "w")):
            if name:
                dim.dim_param = name
    del model.graph.value_info[:]
    return model.SerializeToString()


def rename_outputs(outputs: list) -> dict:
    """Official output order -> the toolkit's output names."""
    return dict(zip(OUTPUT_NAMES, outputs))

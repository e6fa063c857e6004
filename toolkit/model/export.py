"""Export the PyTorch module to ONNX (opset >= 13), simplify with onnxsim and check it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from toolkit import fileio
from toolkit.errors import ToolkitError
from toolkit.model.centerface import CenterFace
from toolkit.model.signature import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAMES, ExportShape, check_opset


def export(net: CenterFace, onnx_path: Path, shape: ExportShape = ExportShape(),
           opset: int = DEFAULT_OPSET, simplify: bool = True) -> Path:
    """Write `onnx_path` atomically: export, optional onnxsim, then the ONNX checker."""
    import onnx

    check_opset(opset)
    example = torch.zeros(shape.example())

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net.eval(), (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes=shape.dynamic_axes(), do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        model.producer_name, model.producer_version = "centerface-toolkit", _version()
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))

    return fileio.write_with(onnx_path, write)


def _simplify(model):
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ToolkitError("onnxsim could not validate the simplified model")
    return simplified


def _version() -> str:
    from toolkit import __version__

    return __version__


def max_abs_diff(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> dict[str, float]:
    worst = {name: 0.0 for name in OUTPUT_NAMES}
    for ref, cand in zip(reference, candidate, strict=True):
        for name in OUTPUT_NAMES:
            if ref[name].shape != cand[name].shape:
                raise ToolkitError(f"output {name}: shape {cand[name].shape} differs from {ref[name].shape}")
            worst[name] = max(worst[name], float(np.max(np.abs(ref[name] - cand[name]))))
    return worst


def torch_outputs(net: CenterFace, batch: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        return {n: t.numpy() for n, t in zip(OUTPUT_NAMES, net(torch.from_numpy(batch)))}

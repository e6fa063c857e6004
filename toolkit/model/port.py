"""Port the official ONNX initializers into the PyTorch module and save the `.pth` state dict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit import fileio, reading
from toolkit.errors import InputError
from toolkit.model.centerface import CenterFace

BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _load_onnx(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Map every Conv / ConvTranspose / BatchNormalization of the official graph onto the module."""
    from onnx import numpy_helper

    model = _load_onnx(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    net = CenterFace()
    names = {m: n for n, m in net.named_modules()}
    convs = iter(net.convs_in_graph_order())
    state: dict[str, torch.Tensor] = {}

    def take(key: str, onnx_name: str) -> None:
        if onnx_name not in inits:
            raise InputError(f"{path}: initializer {onnx_name!r} missing: not the CenterFace graph")
        state[key] = torch.from_numpy(np.array(inits[onnx_name], dtype=np.float32))

    deconvs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            module = next(convs, None)
            if module is None:
                raise InputError(f"{path}: more convolutions than CenterFace has")
            prefix = names[module]
            take(f"{prefix}.weight", node.input[1])
            take(f"{prefix}.bias", node.input[2])
        elif node.op_type == "ConvTranspose":
            deconvs += 1
            take(_deconv_prefix(node.input[1], path) + ".conv.weight", node.input[1])
        elif node.op_type == "BatchNormalization":
            prefix = _deconv_prefix(node.input[1], path) + ".bn"
            for field, name in zip(BN_FIELDS, node.input[1:5]):
                take(f"{prefix}.{field}", name)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing or deconvs != len(net.neck.deconv_layers):
        raise InputError(f"{path}: not the CenterFace graph ({len(missing)} parameters unmatched)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise InputError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, CenterFace expects {tuple(expected[key].shape)}"
            )
    return state


def _deconv_prefix(initializer: str, path: Path) -> str:
    # Official names read 'neck.deconv_layers.<i>.conv.weight' / '.bn.weight'.
    parts = initializer.split(".")
    if len(parts) < 3 or parts[:2] != ["neck", "deconv_layers"]:
        raise InputError(f"{path}: unexpected upsampling layer {initializer!r}: not the CenterFace graph")
    return ".".join(parts[:3])


def load_module(pth: Path) -> CenterFace:
    reading.regular_file(pth, ".pth file")
    net = CenterFace()
    try:
        state = torch.load(pth, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except FileNotFoundError:
        raise InputError(f"{pth}: no such file") from None
    except Exception as exc:
        raise InputError(f"{pth}: not a CenterFace state dict ({type(exc).__name__}: {str(exc)[:120]})") from None
    return net.eval()


def port(onnx_path: Path, pth_path: Path) -> Path:
    """Official ONNX -> `.pth` state dict (loadable into `CenterFace`)."""
    state = state_dict_from_onnx(onnx_path)
    net = CenterFace()
    net.load_state_dict(state, strict=False)
    return fileio.write_with(pth_path, lambda tmp: torch.save(net.state_dict(), tmp))

"""`parity`: the PyTorch port against the official ONNX (and an exported ONNX) on real images."""

from __future__ import annotations

import tempfile
from pathlib import Path

from toolkit.chain import parity
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.model import torch_parts


def parity_on_images(files: list[Path], pre: Preprocess, official: Path, pth: Path | None, onnx_path: Path | None) -> dict:
    """Largest |difference| per output; a missing .pth or ONNX is made from the official weights first."""
    port, exporter = torch_parts()
    batches = [pre(read_rgb(f))[0][None] for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        pth = pth or port.port(official, Path(tmp) / "centerface.pth")
        net = port.load_module(pth)
        onnx_path = onnx_path or exporter.export(net, Path(tmp) / "centerface.onnx")
        return parity(official, net, onnx_path, batches)

"""The PyTorch half on its own: `port`, `export`, and `parity` (the port against the official ONNX, and
an exported ONNX, on real images). Ctrl-C waits for the end of each: PyTorch's native code aborts the
process if interrupted inside a callback (see chain.export_model)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from toolkit import fileio, reading
from toolkit.chain import parity
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.model import torch_parts
from toolkit.model.signature import ExportShape
from toolkit.runfolder import deferred_interrupts


def port_weights(official: Path, out_path: Path) -> Path:
    """The official ONNX weights as the PyTorch module's .pth (replacing only a file the toolkit wrote)."""
    fileio.check_output_file(out_path)
    with deferred_interrupts():
        port, _ = torch_parts()
        fileio.publish({out_path: lambda tmp: port.port(official, tmp)})
    return out_path


def export_pth(pth: Path, out_path: Path, shape: ExportShape, opset: int, simplify: bool) -> Path:
    """A .pth exported to ONNX, simplified and checked (replacing only a file the toolkit wrote)."""
    fileio.check_output_file(out_path)
    reading.regular_file(pth, ".pth file")
    with deferred_interrupts():
        port, exporter = torch_parts()
        net = port.load_module(pth)
        fileio.publish({out_path: lambda tmp: exporter.export(net, tmp, shape, opset, simplify)})
    return out_path


def parity_on_images(files: list[Path], pre: Preprocess, official: Path, pth: Path | None, onnx_path: Path | None) -> dict:
    """Largest |difference| per output; a missing .pth or ONNX is made from the official weights first."""
    batches = [pre(read_rgb(f))[0][None] for f in files]
    with deferred_interrupts(), tempfile.TemporaryDirectory() as tmp:
        port, exporter = torch_parts()
        pth = pth or port.port(official, Path(tmp) / "centerface.pth")
        net = port.load_module(pth)
        onnx_path = onnx_path or exporter.export(net, Path(tmp) / "centerface.onnx")
        return parity(official, net, onnx_path, batches)

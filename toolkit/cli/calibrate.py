"""`calibrate`: build the calibration set, quantise with each method, report accuracy and speed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from toolkit import quantization, runfolder, targets
from toolkit.chain import Stages, check_limit, export_model
from toolkit.cli.common import console, handle_errors, out, progress
from toolkit.data import wider
from toolkit.errors import InputError
from toolkit.paths import default_dataset, runs_dir


@handle_errors
def calibrate_cmd(
    target: Annotated[str, typer.Option(help="An INT8 target (a file in targets/ with a [calibration] table).")] = "cpu-int8",
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (default: the shared val subset).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods (minmax, entropy, percentile); default: the target's.")] = None,
    count: Annotated[Optional[int], typer.Option(help="Calibration images (default: the recipe's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate on only the first N non-calibration images.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>).")] = None,
) -> None:
    """Calibrate and quantise to INT8 with each method; AP, speed-up and size against FP32 in one report."""
    spec = targets.load(target)
    if spec.precision != "int8":
        raise InputError(f"target {spec.name}: precision {spec.precision}, calibration is for INT8 targets")
    root = data or default_dataset()
    if root is None or not root.is_dir():
        raise InputError(f"{root or 'no dataset'}: calibration needs the WIDER FACE images", "pass --data <WIDER root>")
    check_limit(limit)
    run_dir = out_dir or runs_dir() / spec.name
    gt = wider.load_ground_truth(root)
    with runfolder.transaction(run_dir, f"calibrate --target {spec.name}") as staged, progress() as bar:
        fp32 = export_model(spec, staged, None, Stages(console.print), [])
        items = quantization.evaluation_items(quantization.recipe_for(spec, count), root, limit)
        report = quantization.calibrate(spec, fp32.onnx, root, gt, staged, items, console.print, bar,
                                        methods.split(",") if methods else None, count)
    table = Table(title=f"{spec.name}: INT8 against FP32 on {report['evaluated_images']} images "
                        f"({len(report['calibration_images'])} calibration images left out)")
    for col in ("config", "easy", "medium", "hard", "Δeasy", "Δmedium", "Δhard", "infer/s", "speed-up", "MB"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for row in report["rows"]:
        table.add_row(row["config"], *(f"{row[s]:.4f}" for s in ("easy", "medium", "hard")),
                      *(f"{row[f'delta_{s}']:+.2f}" for s in ("easy", "medium", "hard")),
                      f"{row['infer_images_per_s']}", f"{row['speedup']}x", f"{row['size_mb']}",
                      style="bold" if row["config"] == report["best"] else "")
    out.print(table)
    out.print(f"best: {report['best']} -> {run_dir / quantization.BEST}; report: "
              f"{run_dir / (quantization.REPORT + '.json')}, {run_dir / (quantization.REPORT + '.md')}")

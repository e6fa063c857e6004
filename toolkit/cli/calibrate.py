"""`calibrate`: INT8 for a target; for the sweep, AP, speed-up and size of every configuration against FP32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import calibration, quantization, targets
from toolkit.cli.common import handle_errors, log, out, progress
from toolkit.cli.infer import CalibDataOpt
from toolkit.cli.layout import Col, Grid, say, show
from toolkit.data.wider import SETTINGS
from toolkit.evaluate.deltas import ap_words
from toolkit.flows.calibrate import calibrate_target
from toolkit.paths import default_dataset, runs_dir


@handle_errors
def calibrate_cmd(
    target: Annotated[str, typer.Option(help="An INT8 target (a file in targets/ with a [calibration] table).")] = "cpu-int8",
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (default: the shared val subset).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods of the sweep (minmax, entropy, percentile); default: the target's.")] = None,
    count: Annotated[Optional[int], typer.Option(help="Calibration images (default: the recipe's).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate on only the first N non-calibration images.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>).")] = None,
    calib_data: CalibDataOpt = None,
    search: Annotated[bool, typer.Option(help="Search the float set of least cost (measured time here, else FLOPs) that keeps the AP within half the tolerance (0.25 / 0.25 / 0.5 points) on every other non-calibration image, and confirm it on the rest; writes search.json, search.png and search.toml (the target-file lines that keep it). Every INT8 target; a device that is not here through its emulation.")] = False,
) -> None:
    """Calibrate and quantise to INT8 (each method of the sweep, or the vendor's quantiser); AP against FP32."""
    spec = calibration.with_images(targets.load(target), calib_data)
    run_dir = out_dir or runs_dir() / spec.name
    with progress() as bar:
        done = calibrate_target(spec, data or default_dataset(), run_dir, methods.split(",") if methods else None,
                                count, limit, log, bar, search)
    if "search" in done:
        _show_search(done["search"], run_dir)
        return
    if "sweep" in done:
        _show_sweep(spec.name, done["sweep"], run_dir)
        return
    summary = done["quantiser"]
    twin = summary.get("onnx_twin_ap")
    say(out, f"{spec.name}: {summary['method']} on {summary['images']} calibration images (set "
             f"{summary['set_sha256'][:16]}) -> {done['artefact']}"
             + (f"; its ONNX twin's AP in ONNX Runtime: {ap_words(twin)}" if twin else ""))


def _show_sweep(name: str, report: dict, run_dir: Path) -> None:
    grid = Grid(f"{name}: INT8 against FP32 on {report['evaluated_images']} images "
                f"({len(report['calibration_images'])} calibration images left out)",
                [Col("config", right=False), *(Col(s, 1, figure=True) for s in SETTINGS),
                 *(Col(f"Δ{s}", figure=True) for s in SETTINGS), Col("infer/s", figure=True),
                 Col("speed-up", 2), Col("MB", 3)])
    for row in report["rows"]:
        grid.add(row["config"], *(_figure(row[s], ".4f") for s in SETTINGS),
                 *(_figure(row[f"delta_{s}"], "+.2f") for s in SETTINGS),
                 f"{row['infer_images_per_s']}", f"{row['speedup']}x", f"{row['size_mb']}",
                 style="bold" if row["config"] == report["best"] else "")
    show(out, grid)
    say(out, f"best: {report['best']} -> {run_dir / quantization.BEST}; report: "
             f"{run_dir / (quantization.REPORT + '.json')}, {run_dir / (quantization.REPORT + '.md')}")


def _figure(value: float | None, spec: str) -> str:
    """A figure as `spec` formats it; "-" where there is none (no face of that setting among the images)."""
    return "-" if value is None else format(value, spec)


def _show_search(found: dict, run_dir: Path) -> None:
    emulated = " (emulated)" if found["emulated"] else ""
    grid = Grid(f"{found['target']}{emulated}: float sets tried, AP against FP32 on the {found['selection_images']} "
                f"selection images; cost: {found['cost']}", [
                    Col("in float"), Col("cost %", figure=True), Col("FLOPs %", 2, figure=True),
                    *(Col(f"Δ{s}", figure=True) for s in SETTINGS), Col("budget", right=False)])
    for point in found["points"]:
        grid.add(str(len(point["float"])), f"{100 * point['float_cost_share']:.1f}",
                 f"{100 * point['float_flops_share']:.1f}", *(_figure(point[f"delta_{s}"], "+.2f") for s in SETTINGS),
                 "within" if point["within"] else "beyond", style="bold" if point == found["chosen"] else "")
    show(out, grid)
    chosen, confirmed = found["chosen"], found["confirmation"]
    if not found["held"]:
        say(out, f"no float set held the budget: even with all {len(chosen['float'])} convolutions in float the AP "
                 "is beyond it (the loss is not in the convolutions' quantisation)")
    say(out, f"chosen: {len(chosen['float'])} convolutions in float, {100 * chosen['float_cost_share']:.1f} % of the "
             f"cost, {100 * chosen['float_flops_share']:.1f} % of the FLOPs; AP against FP32{emulated}, points "
             f"({_percent(found['interval_level'])} interval):")
    say(out, f"selection ({found['selection_images']} images): {_with_intervals(chosen)}")
    say(out, f"confirmation ({found['confirmation_images']} images): {_with_intervals(confirmed)}, "
             f"{'within' if confirmed['within_budget'] else 'beyond'} the budget, "
             f"{'within' if confirmed['within_tolerance'] else 'beyond'} the tolerance")
    say(out, f"wrote {run_dir / 'search.json'}, {run_dir / 'search.png'}, {run_dir / 'search.toml'} (the target-file "
             f"lines that keep it); the chosen model: {run_dir / found['model']}")


def _with_intervals(deltas: dict) -> str:
    """`easy -0.12 [-0.30, +0.05], ...`: each setting's delta and its interval."""
    words = []
    for s in SETTINGS:
        low_high = deltas["interval"].get(s)
        span = f" [{low_high[0]:+.2f}, {low_high[1]:+.2f}]" if low_high else ""
        words.append(f"{s} {_figure(deltas[f'delta_{s}'], '+.2f')}{span}")
    return ", ".join(words)


def _percent(level: float) -> str:
    return f"{round(100 * level)} %"

"""`report` (one table across every run) and `compare-outputs` (raw output parity of two runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import backends, targets
from toolkit.cli.common import console, handle_errors, in_range, out
from toolkit.cli.layout import Col, Grid, say, show
from toolkit.errors import Exited, InputError
from toolkit.flows.report import LAYER_IMAGES, compare_layers, compare_runs, write_report
from toolkit.paths import default_dataset, runs_dir
from toolkit.report.table import BLOCKS

STATUS_STYLE = {"passed": "green", "ran-but-failed-accuracy": "yellow", "failed": "red", "emulated": "cyan",
                "published": "dim", "simulated": "blue", "not-evaluated": "dim", "served": "green"}
# the terminal's shorter words; JSON keeps the full ones
STATUS_SHOWN = {"ran-but-failed-accuracy": "AP below", "not-evaluated": "no AP"}
# The terminal's columns: header and drop priority (0: always shown; as the terminal narrows, the highest goes
# first, never a row's last figure); --wide adds the rest. Markdown and JSON carry every column. A block without
# TTA rows leaves out the tta column; where a block's title says its rows' status, the status column is left out.
CORE = {"target": Col("target", right=False), "precision": Col("prec", 1, right=False),
        "preprocess": Col("input", 5, right=False), "tta": Col("tta", 3, right=False), "batch": Col("bs", 2),
        "status": Col("status", right=False), "easy": Col("easy", figure=True), "medium": Col("medium", figure=True),
        "hard": Col("hard", figure=True), "delta_hard": Col("Δhard", figure=True),
        "e2e_images_per_s": Col("e2e/s", figure=True), "infer_images_per_s": Col("infer/s", 4, figure=True),
        "served_images_per_s": Col("served/s", figure=True), "p99_ms": Col("p99 ms", 6, figure=True),
        "devices": Col("dev", 7)}
WIDE = {"size_mb": Col("MB", 8, figure=True), "delta_easy": Col("Δeasy", 8, figure=True),
        "delta_medium": Col("Δmedium", 8, figure=True), "tool_images_per_s": Col("tool/s", 8, figure=True),
        "p50_ms": Col("p50 ms", 8, figure=True), "runs_in": Col("runs in", 9, right=False),
        "device": Col("device", 9, right=False)}
AP_COLUMNS = ("easy", "medium", "hard")
STATUS_IN_TITLE = ("emulated", "simulated", "published")


@handle_errors
def report_cmd(
    runs: Annotated[Optional[Path], typer.Option(help="Folder of run folders (default runs/).")] = None,
    tolerance: Annotated[float, typer.Option(help="AP points a run may fall below the reference and still pass.")] = 1.0,
    reference: Annotated[Optional[str], typer.Option(help="Run folder every AP delta is measured against (default: the run of the target whose file says ap_reference = true, CPU FP32).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the table as JSON (default <runs>/report.json).")] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as Markdown (default <runs>/report.md).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Show only this target's rows (the files keep every row).")] = None,
    wide: Annotated[bool, typer.Option(help="Every column (size, all deltas, the vendor tool, latency, where it ran).")] = False,
) -> None:
    """One table over every run's result.json (plus published references), as rich, Markdown, JSON and PNG plots."""
    root = runs or runs_dir()
    in_range("--tolerance", tolerance, 0)
    table, written = write_report(root, tolerance, reference, json_path, markdown_path)
    shown = [r for r in table if target is None or r["target"].split(" [")[0] == target]
    if target is not None and not shown:
        raise InputError(f"--target {target}: no row of that target in {root}",
                         f"run it first: python -m toolkit run --target {target}")
    columns = {**CORE, **WIDE} if wide else CORE
    say(out, f"CenterFace across targets ({root}); AP deltas in points vs {reference or 'CPU FP32'}")
    for kind, title in BLOCKS.items():
        block = [r for r in shown if r["source"] == kind and r["status"] != "unavailable"]
        if block:
            shown_columns = {c: h for c, h in columns.items() if (c != "status" or kind not in STATUS_IN_TITLE)
                             and (c != "tta" or any(r.get("tta") for r in block))}  # the tta column where TTA rows are
            out.print()
            show(out, _block(title, block, shown_columns))
            for row in block:  # deltas over other images than the run's own, or none, say so
                if row.get("delta_note") and kind != "published":
                    say(out, f"{row['target']}: {row['delta_note']}")
    for row in shown:
        if row["reason"] and row["status"] in ("failed", "ran-but-failed-accuracy"):
            say(out, f"{row['target']}: {STATUS_SHOWN.get(row['status'], row['status'])}: {row['reason']}")
    _unavailable(shown)
    say(out, f"wrote {', '.join(map(str, written))}")


def _unavailable(rows: list[dict]) -> None:
    """The targets that cannot run here, one line per reason (targets with the same reason together), each with
    what works here instead."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        if row["status"] == "unavailable":
            by_reason.setdefault(row["reason"], []).append(row["target"])
    if by_reason:
        out.print()
    for reason, names in by_reason.items():
        emulable = all(name in targets.available() and backends.get(targets.load(name).backend).emulation
                       for name in names)
        say(out, f"{', '.join(names)}: cannot run here: {reason}"
                 + ("; their numerics run here with --mode emulate" if emulable else ""))


def _block(title: str, rows: list[dict], columns: dict[str, Col]) -> Grid:
    """One kind of row as a table of the columns some row of it fills (AP whole, 4 decimals)."""
    filled = [c for c in columns if any(r.get(c) is not None for r in rows)]
    grid = Grid(title, [columns[c] for c in filled])
    for row in rows:
        grid.add(*(_cell(row, c) for c in filled), style=STATUS_STYLE.get(row["status"], ""))
    return grid


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    if column in AP_COLUMNS:
        return f"{value:.4f}"
    if column == "status":
        return STATUS_SHOWN.get(value, value)
    if column == "preprocess":
        return _short_input(str(value))
    return str(value)


def _short_input(label: str) -> str:
    """The input in a few characters (the Markdown and JSON keep the whole label): letterbox WxH as WxH,
    buckets as their count, AP and speed at different inputs as `AP's / speed's`."""
    if " (AP) / " in label:
        ap, speed = label.removesuffix(" (speed)").split(" (AP) / ")
        return f"{_short_input(ap)} / {_short_input(speed)}"
    if label.startswith("buckets ") and "," in label:
        return f"{label.count(',') + 1} buckets"
    return label.removeprefix("letterbox ")


@handle_errors
def compare_outputs_cmd(
    run_a: Annotated[Path, typer.Argument(help="Reference run folder (or its outputs.npz), e.g. runs/cpu.")],
    run_b: Annotated[Path, typer.Argument(help="Run folder to check against it.")],
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-3,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the comparison here (--layers: default <run_b>/layers.json, its plot beside it).")] = None,
    layers: Annotated[bool, typer.Option(help="Instead: each convolution's quantisation error, run_b's Q/DQ ONNX against run_a's float ONNX tensor by tensor (ONNX Runtime's qdq_loss_debug), with its FLOPs and block.")] = False,
    data: Annotated[Optional[Path], typer.Option(help="--layers: WIDER FACE root of the images (default: the shared val subset).")] = None,
    images: Annotated[int, typer.Option(help="--layers: images the models run (run_b's calibration images first).")] = LAYER_IMAGES,
) -> None:
    """Compare the raw outputs two runs saved: largest differences and the minimum tolerance that passes."""
    if layers:
        in_range("--images", images, 1)
        _show_layers(compare_layers(run_a, run_b, data or default_dataset(), images, json_path))
        return
    in_range("--atol", atol, 0)
    in_range("--rtol", rtol, 0)
    result, unpaired = compare_runs(run_a, run_b, atol, rtol, json_path)
    for run, only in zip((run_a, run_b), unpaired):
        if only:
            say(console, f"note: {len(only)} images only in {run}, not compared: {', '.join(only)}")
    grid = Grid(f"{run_b} vs {run_a} (atol {atol}, rtol {rtol})",
                [Col("output", right=False), Col("images", 3), Col("max |diff|"), Col("mean |diff|", 2),
                 Col("max rel", 1), Col("min atol (rtol 0)"), Col("min rtol (atol 0)"), Col("pass", right=False)])
    for name, r in result.items():
        grid.add(name, str(r["images"]), f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}", f"{r['max_rel']:.3e}",
                 f"{r['min_atol']:.3e}", f"{r['min_rtol']:.3e}", "yes" if r["passed"] else "no",
                 style="" if r["passed"] else "red")
    show(out, grid)
    for name, r in result.items():
        for where in r["non_finite"]:
            say(console, f"{name}: values that are not finite numbers in {where}")
    failed = [name for name, r in result.items() if not r["passed"]]
    if failed:
        why = [f"{name}: values that are not finite (listed above)" if result[name]["non_finite"]
               else f"{name}: beyond atol {atol} / rtol {rtol} (its minimum tolerances are in the table)"
               for name in failed]
        raise Exited("; ".join(why), 1)


def _show_layers(found: dict) -> None:
    """The convolutions in network order: block, FLOPs, their share, and the error of their input (dB)."""
    grid = Grid(f"quantisation error per convolution: {found['qdq_model']} against {found['float_model']}, "
                f"{len(found['images'])} images at {found['preprocess']}",
                [Col("block", right=False), Col("convolution", 1, right=False), Col("MFLOPs", figure=True),
                 Col("share", 2), Col("local dB", 3, figure=True), Col("vs float dB", figure=True)])
    for row in found["convolutions"]:
        grid.add(row["block"], row["node"], f"{row['flops'] / 1e6:.1f}", f"{100 * row['flops_share']:.1f}%",
                 _db(row["local_sqnr_db"]), _db(row["vs_float_sqnr_db"]))
    show(out, grid)
    say(out, f"{found['error']}; wrote {', '.join(found['written'])}")


def _db(value: float | None) -> str:
    return "not quantised" if value is None else f"{value:.1f}"

"""`report` (one table across every run) and `compare-outputs` (raw output parity of two runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from toolkit.cli.common import console, handle_errors, in_range, out
from toolkit.errors import Exited, InputError
from toolkit.flows.report import compare_runs, write_report
from toolkit.paths import runs_dir

STATUS_STYLE = {"passed": "green", "ran-but-failed-accuracy": "yellow", "failed": "red", "emulated": "cyan",
                "published": "dim", "simulated": "blue", "not-evaluated": "dim", "served": "green"}
# the terminal's shorter words; JSON keeps the full ones
STATUS_SHOWN = {"ran-but-failed-accuracy": "AP below", "not-evaluated": "no AP"}
# The terminal's columns (header), the core first; --wide adds the rest. Markdown and JSON carry every column.
CORE = {"target": "target", "precision": "prec", "preprocess": "input", "tta": "tta", "batch": "bs", "status": "status",
        "easy": "easy", "medium": "medium", "hard": "hard", "delta_hard": "Δhard", "e2e_images_per_s": "e2e/s",
        "infer_images_per_s": "infer/s", "served_images_per_s": "served/s", "p99_ms": "p99 ms", "devices": "dev"}
WIDE = {"size_mb": "MB", "delta_easy": "Δeasy", "delta_medium": "Δmedium", "tool_images_per_s": "tool/s",
        "p50_ms": "p50 ms", "runs_in": "runs in", "device": "device"}
TEXT = ("target", "preprocess", "tta", "runs_in", "device")  # these give way (fold) when the terminal is narrow
# One block per kind of row, in this order (a block without TTA rows leaves out the tta column); `target` rows (cannot run here) are one line each below. Where a
# block's title says its rows' status, the status column is left out.
BLOCKS = {"measured": "measured here", "calibration": "INT8 calibration configurations (measured here)",
          "emulated": "EMULATED on this CPU: the device's numerics, never its speed",
          "simulated": "SIMULATED devices: host-side speed only, never an AP", "published": "published figures"}
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
    out.print(f"CenterFace across targets ({root}); AP deltas in points vs {reference or 'CPU FP32'}")
    for kind, title in BLOCKS.items():
        block = [r for r in shown if r["source"] == kind and r["status"] != "unavailable"]
        if block:
            shown_columns = {c: h for c, h in columns.items() if (c != "status" or kind not in STATUS_IN_TITLE)
                             and (c != "tta" or any(r.get("tta") for r in block))}  # the tta column where TTA rows are
            out.print(Text(f"\n{title}", style="bold"))
            out.print(_block(block, shown_columns))
            for row in block:  # deltas over other images than the run's own, or none, say so
                if row.get("delta_note") and kind != "published":
                    out.print(f"{row['target']}: {row['delta_note']}", soft_wrap=True)
    for row in shown:
        if row["status"] == "unavailable" or (row["reason"] and row["status"] in ("failed", "ran-but-failed-accuracy")):
            out.print(f"{row['target']}: {row['status']}: {row['reason']}", no_wrap=True, overflow="ellipsis",
                      crop=True)
    out.print(f"wrote {', '.join(map(str, written))}")


def _block(rows: list[dict], columns: dict[str, str]) -> Table:
    """One kind of row as a table of the columns some row of it fills (AP whole, 4 decimals)."""
    filled = [c for c in columns if any(r.get(c) is not None for r in rows)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for col in filled:
        table.add_column(columns[col], justify="left" if col in TEXT or col == "precision" else "right",
                         no_wrap=col not in TEXT, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row, c) for c in filled), style=STATUS_STYLE.get(row["status"], ""))
    return table


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
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the comparison here.")] = None,
) -> None:
    """Compare the raw outputs two runs saved: largest differences and the minimum tolerance that passes."""
    in_range("--atol", atol, 0)
    in_range("--rtol", rtol, 0)
    result, unpaired = compare_runs(run_a, run_b, atol, rtol, json_path)
    for run, only in zip((run_a, run_b), unpaired):
        if only:
            console.print(f"note: {len(only)} images only in {run}, not compared: {', '.join(only)}")
    table = Table(title=f"{run_b} vs {run_a} (atol {atol}, rtol {rtol})")
    for col in ("output", "images", "max |diff|", "mean |diff|", "max rel", "min atol (rtol 0)", "min rtol (atol 0)", "pass"):
        table.add_column(col, justify="right")
    for name, r in result.items():
        table.add_row(name, str(r["images"]), f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}", f"{r['max_rel']:.3e}",
                      f"{r['min_atol']:.3e}", f"{r['min_rtol']:.3e}", Text("yes", "green") if r["passed"] else Text("no", "red"))
    out.print(table)
    for name, r in result.items():
        for where in r["non_finite"]:
            console.print(f"{name}: values that are not finite numbers in {where}", soft_wrap=True)
    failed = [name for name, r in result.items() if not r["passed"]]
    if failed:
        why = [f"{name}: values that are not finite (listed above)" if result[name]["non_finite"]
               else f"{name}: beyond atol {atol} / rtol {rtol} (its minimum tolerances are in the table)"
               for name in failed]
        raise Exited("; ".join(why), 1)

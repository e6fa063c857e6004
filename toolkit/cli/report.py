"""`report` (one table across every run) and `compare-outputs` (raw output parity of two runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli.common import console, handle_errors, in_range, out
from toolkit.errors import Exited
from toolkit.flows.report import compare_runs, write_report
from toolkit.paths import runs_dir

STATUS_STYLE = {"passed": "green", "ran-but-failed-accuracy": "yellow", "failed": "red", "emulated": "cyan",
                "unavailable": "magenta", "published": "dim", "simulated": "blue"}
# The terminal shows these; Markdown and JSON carry every column (device, SDK, all deltas).
SHOWN = {"target": "target", "precision": "prec", "preprocess": "preprocess", "batch": "bs", "status": "status", "size_mb": "MB",
         "easy": "easy", "medium": "medium", "hard": "hard", "delta_hard": "Δhard", "e2e_images_per_s": "e2e/s",
         "infer_images_per_s": "infer/s", "tool_images_per_s": "tool/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "devices": "devices", "runs_in": "runs in"}


@handle_errors
def report_cmd(
    runs: Annotated[Optional[Path], typer.Option(help="Folder of run folders (default runs/).")] = None,
    tolerance: Annotated[float, typer.Option(help="AP points a run may fall below the reference and still pass.")] = 1.0,
    reference: Annotated[Optional[str], typer.Option(help="Run folder every AP delta is measured against (default: the run of the target whose file says ap_reference = true, CPU FP32).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the table as JSON (default <runs>/report.json).")] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as Markdown (default <runs>/report.md).")] = None,
) -> None:
    """One table over every run's result.json (plus published references), as rich, Markdown, JSON and PNG plots."""
    root = runs or runs_dir()
    in_range("--tolerance", tolerance, 0)
    table, written = write_report(root, tolerance, reference, json_path, markdown_path)
    rich_table = Table(title=f"CenterFace across targets ({root}); deltas in AP points vs {reference or 'CPU FP32'}")
    for col, header in SHOWN.items():
        rich_table.add_column(header, justify="left" if col in ("target", "status") else "right")
    for row in table:
        style = STATUS_STYLE.get(row["status"], "")
        rich_table.add_row(*("" if row.get(c) is None else escape(str(row[c])) for c in SHOWN), style=style)
    out.print(rich_table)
    for row in table:
        if row["reason"]:
            console.print(escape(f"{row['target']}: {row['status']}: {row['reason']}"))
    out.print(f"wrote {', '.join(map(str, written))}")


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
            console.print(escape(f"note: {len(only)} images only in {run}, not compared: {', '.join(only)}"))
    table = Table(title=f"{run_b} vs {run_a} (atol {atol}, rtol {rtol})")
    for col in ("output", "images", "max |diff|", "mean |diff|", "max rel", "min atol (rtol 0)", "min rtol (atol 0)", "pass"):
        table.add_column(col, justify="right")
    for name, r in result.items():
        table.add_row(name, str(r["images"]), f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}", f"{r['max_rel']:.3e}",
                      f"{r['min_atol']:.3e}", f"{r['min_rtol']:.3e}", "[green]yes[/]" if r["passed"] else "[red]no[/]")
    out.print(table)
    failed = [name for name, r in result.items() if not r["passed"]]
    if failed:
        raise Exited(f"{', '.join(failed)}: beyond atol {atol} / rtol {rtol} (the minimum tolerances are in the table)", 1)

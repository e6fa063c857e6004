"""`report` (one table across every run) and `compare-outputs` (raw output parity of two runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from toolkit import fileio
from toolkit.cli.common import console, handle_errors, out
from toolkit.paths import runs_dir
from toolkit.report import outputs, plots
from toolkit.report.table import COLUMNS, load_runs, markdown, rows

STATUS_STYLE = {"passed": "green", "ran-but-failed-accuracy": "yellow", "failed": "red",
                "unavailable": "magenta", "published": "dim"}
# The terminal shows these; Markdown and JSON carry every column (device, SDK, all deltas).
SHOWN = {"target": "target", "precision": "prec", "preprocess": "preprocess", "batch": "bs", "status": "status", "size_mb": "MB",
         "easy": "easy", "medium": "medium", "hard": "hard", "delta_hard": "Δhard", "e2e_images_per_s": "e2e/s",
         "infer_images_per_s": "infer/s", "tool_images_per_s": "tool/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "runs_in": "runs in"}


@handle_errors
def report_cmd(
    runs: Annotated[Optional[Path], typer.Option(help="Folder of run folders (default runs/).")] = None,
    tolerance: Annotated[float, typer.Option(help="AP points a run may fall below CPU FP32 and still pass.")] = 1.0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the table as JSON (default <runs>/report.json).")] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as Markdown (default <runs>/report.md).")] = None,
) -> None:
    """One table over every run's result.json (plus published references), as rich, Markdown, JSON and PNG plots."""
    root = runs or runs_dir()
    fileio.check_output_file(json_path)
    fileio.check_output_file(markdown_path)
    results = load_runs(root)
    table = rows(results, tolerance)
    rich_table = Table(title=f"CenterFace across targets ({root}); deltas in AP points vs CPU FP32")
    for col, header in SHOWN.items():
        rich_table.add_column(header, justify="left" if col in ("target", "status") else "right")
    for row in table:
        style = STATUS_STYLE.get(row["status"], "")
        rich_table.add_row(*("" if row.get(c) is None else escape(str(row[c])) for c in SHOWN), style=style)
    out.print(rich_table)
    for row in table:
        if row["reason"]:
            console.print(escape(f"{row['target']}: {row['status']}: {row['reason']}"))
    fileio.write_json(json_path or root / "report.json", {"columns": list(COLUMNS), "tolerance": tolerance, "rows": table})
    fileio.write_text(markdown_path or root / "report.md", markdown(table))
    made = [p for p in (plots.pr_curves(root, results, root / "pr_curves.png"),
                        plots.throughput(table, root / "throughput.png")) if p]
    out.print(f"wrote {json_path or root / 'report.json'}, {markdown_path or root / 'report.md'}"
              + "".join(f", {p}" for p in made))


@handle_errors
def compare_outputs_cmd(
    run_a: Annotated[Path, typer.Argument(help="Reference run folder (or its outputs.npz), e.g. runs/cpu.")],
    run_b: Annotated[Path, typer.Argument(help="Run folder to check against it.")],
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-3,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the comparison here.")] = None,
) -> None:
    """Compare the raw outputs two runs saved: largest differences and the minimum tolerance that passes."""
    fileio.check_output_file(json_path)
    saved_a, saved_b = outputs.load(run_a), outputs.load(run_b)
    for run, only in zip((run_a, run_b), outputs.unpaired(saved_a, saved_b)):
        if only:
            console.print(escape(f"note: {len(only)} images only in {run}, not compared: {', '.join(only)}"))
    result = outputs.compare(saved_a, saved_b, atol, rtol)
    table = Table(title=f"{run_b} vs {run_a} (atol {atol}, rtol {rtol})")
    for col in ("output", "images", "max |diff|", "mean |diff|", "max rel", "min atol (rtol 0)", "min rtol (atol 0)", "pass"):
        table.add_column(col, justify="right")
    for name, r in result.items():
        table.add_row(name, str(r["images"]), f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}", f"{r['max_rel']:.3e}",
                      f"{r['min_atol']:.3e}", f"{r['min_rtol']:.3e}", "[green]yes[/]" if r["passed"] else "[red]no[/]")
    out.print(table)
    if json_path:
        fileio.write_json(json_path, result)
    if not all(r["passed"] for r in result.values()):
        raise typer.Exit(1)

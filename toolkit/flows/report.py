"""`report`: one table over every run folder's result.json, the published rows and the targets that
cannot run here, written as JSON, Markdown and PNG plots."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio
from toolkit.report import outputs, plots
from toolkit.report.table import COLUMNS, load_runs, markdown, rows


def write_report(root: Path, tolerance: float, reference: str | None, json_path: Path | None,
                 markdown_path: Path | None) -> tuple[list[dict], list[Path]]:
    """The rows, and the files written (JSON, Markdown, then the plots that had data)."""
    json_path, markdown_path = json_path or root / "report.json", markdown_path or root / "report.md"
    fileio.check_output_file(json_path)
    fileio.check_output_file(markdown_path)
    results = load_runs(root)
    table = rows(results, tolerance, reference)
    fileio.write_json(json_path, {"columns": list(COLUMNS), "tolerance": tolerance, "reference": reference, "rows": table})
    fileio.write_text(markdown_path, markdown(table))
    made = [p for p in (plots.pr_curves(root, results, root / "pr_curves.png"),
                        plots.throughput(table, root / "throughput.png")) if p]
    return table, [json_path, markdown_path, *made]


def compare_runs(run_a: Path, run_b: Path, atol: float, rtol: float, json_path: Path | None) -> tuple[dict, tuple]:
    """The raw-output comparison of two runs, and the images only one of them saved (a's, b's)."""
    fileio.check_output_file(json_path)
    saved_a, saved_b = outputs.load(run_a), outputs.load(run_b)
    result = outputs.compare(saved_a, saved_b, atol, rtol)
    if json_path:
        fileio.write_json(json_path, result)
    return result, outputs.unpaired(saved_a, saved_b)

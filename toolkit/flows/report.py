"""`report`: one table over every run folder's result.json, the published rows and the targets that
cannot run here, written as JSON, Markdown and PNG plots."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio
from toolkit.report import outputs, plots
from toolkit.report.table import COLUMNS, load_runs, markdown, rows


def write_report(root: Path, tolerance: float, reference: str | None, json_path: Path | None,
                 markdown_path: Path | None) -> tuple[list[dict], list[Path]]:
    """The rows, and the files written together (JSON, Markdown, then the plots that had data): all of them
    replace the earlier report's, or none does."""
    json_path, markdown_path = json_path or root / "report.json", markdown_path or root / "report.md"
    fileio.check_output_file(json_path)
    fileio.check_output_file(markdown_path)
    results = load_runs(root)
    table = rows(results, tolerance, reference)
    files = {json_path: fileio.json_writer({"columns": list(COLUMNS), "tolerance": tolerance, "reference": reference,
                                            "rows": table}),
             markdown_path: lambda tmp: tmp.write_text(markdown(table), encoding="utf-8")}
    for name, writer in (("pr_curves.png", plots.pr_curves(root, results)), ("throughput.png", plots.throughput(table))):
        if writer is not None:
            files[root / name] = writer
    return table, fileio.publish(files)


def compare_runs(run_a: Path, run_b: Path, atol: float, rtol: float, json_path: Path | None) -> tuple[dict, tuple]:
    """The raw-output comparison of two runs, and the images only one of them saved (a's, b's)."""
    fileio.check_output_file(json_path)
    saved_a, saved_b = outputs.load(run_a), outputs.load(run_b)
    result = outputs.compare(saved_a, saved_b, atol, rtol)
    if json_path:
        fileio.publish({json_path: fileio.json_writer(result)})
    return result, outputs.unpaired(saved_a, saved_b)

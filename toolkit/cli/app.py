"""The typer application: every command registered in one place, one way."""

from __future__ import annotations

import typer
from rich.table import Table

from toolkit import __version__, backends, runfolder, targets
from toolkit.cli import bench, calibrate, containers, detect, doctor, evaluate, infer, model, report, serve
from toolkit.cli.common import handle_errors, out

app = typer.Typer(
    name="centerface-toolkit",
    help="CenterFace deployment toolkit: weights -> PyTorch -> ONNX -> targets (CPU, Ascend, TensorRT), "
         "WIDER FACE evaluation, benchmarks and reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts print as written: "[tta]" is a table's name, not markup
)


@handle_errors
def targets_cmd() -> None:
    """List the targets (one TOML file each under targets/)."""
    rows = []
    for name in targets.available():
        t = targets.load(name)
        pre = t.preprocess
        shape = f"{len(pre.buckets)} buckets" if pre.mode == "buckets" else pre.describe().replace("letterbox ", "")
        here = "no" if backends.get(t.backend).unavailable_for(t) else "yes"
        rows.append((t.name, t.precision, shape, t.runs_in, here, t.description))
    table = Table(title="targets (here: can run on this machine)", box=None, pad_edge=False)
    fixed = ("name", "precision", "input", "runs in", "here")
    widths = [max(len(col), *(len(r[i]) for r in rows)) for i, col in enumerate(fixed)]
    for col, width in zip(fixed, widths):
        table.add_column(col, no_wrap=True, min_width=width)
    # one line a target: the description gives way, to the width the other columns leave
    table.add_column("description", no_wrap=True, overflow="ellipsis",
                     max_width=max(11, out.width - sum(widths) - 2 * len(widths)))
    for row in rows:
        table.add_row(*row)
    out.print(table)


def version_cmd() -> None:
    """Print the toolkit version."""
    out.print(__version__)


COMMANDS = {
    "fetch-weights": model.fetch_weights_cmd, "port": model.port_cmd, "export": model.export_cmd,
    "parity": model.parity_cmd, "detect": detect.detect_cmd, "convert": infer.convert_cmd, "run": infer.run_cmd,
    "evaluate": evaluate.evaluate_cmd, "bench": bench.bench_cmd, "calibrate": calibrate.calibrate_cmd,
    "serve": serve.serve_cmd, "report": report.report_cmd, "compare-outputs": report.compare_outputs_cmd, "doctor": doctor.doctor_cmd,
    "build": containers.build_cmd, "base-image": containers.base_image_cmd, "targets": targets_cmd,
    "version": version_cmd,
}
for name, command in COMMANDS.items():
    app.command(name)(command)


def main() -> None:
    runfolder.handle_sigterm()  # SIGTERM unwinds like Ctrl-C: run folders roll back, nothing half-written stays
    app()

"""The typer application: wires the command modules together."""

from __future__ import annotations

import typer
from rich.table import Table

from toolkit import __version__, runfolder, targets
from toolkit.cli import bench, calibrate, containers, doctor, evaluate, infer, model, report
from toolkit.cli.common import handle_errors, out

app = typer.Typer(
    name="centerface-toolkit",
    help="CenterFace deployment toolkit: weights -> PyTorch -> ONNX -> targets (CPU, Ascend, TensorRT), "
         "WIDER FACE evaluation, benchmarks and reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for sub in (model.app, infer.app):
    for command in sub.registered_commands:
        app.registered_commands.append(command)
app.command("evaluate")(evaluate.evaluate_cmd)
app.command("bench")(bench.bench_cmd)
app.command("calibrate")(calibrate.calibrate_cmd)
app.command("report")(report.report_cmd)
app.command("compare-outputs")(report.compare_outputs_cmd)
app.command("doctor")(doctor.doctor)
app.command("build")(containers.build_cmd)
app.command("base-image")(containers.base_image_cmd)


@app.command("targets")
@handle_errors
def list_targets() -> None:
    """List the targets (one TOML file each under targets/)."""
    table = Table(title="targets")
    for col in ("name", "backend", "precision", "preprocess", "batch sizes", "runs in", "description"):
        table.add_column(col)
    for name in targets.available():
        t = targets.load(name)
        table.add_row(t.name, t.backend, t.precision, t.preprocess.describe(),
                      ",".join(map(str, t.batch_sizes)), t.runs_in, t.description)
    out.print(table)


@app.command("version")
def version() -> None:
    """Print the toolkit version."""
    out.print(__version__)


def main() -> None:
    runfolder.handle_sigterm()  # SIGTERM unwinds like Ctrl-C: run folders roll back, nothing half-written stays
    app()

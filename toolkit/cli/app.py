"""The typer application: every command registered in one place, one way."""

from __future__ import annotations

import typer

from toolkit import __version__, backends, runfolder, targets
from toolkit.cli import bench, calibrate, containers, detect, doctor, evaluate, infer, model, report, serve
from toolkit.cli.common import handle_errors, out
from toolkit.cli.layout import Col, Grid, say, show

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
    """List the targets (one TOML file each under targets/) and what this machine can run of each."""
    grid = Grid("targets", [Col("name", right=False), Col("summary", right=False), Col("prec", 2, right=False),
                            Col("input", 3, right=False), Col("runs in", 4, right=False), Col("here", right=False)])
    emulated = []
    for name in targets.available():
        t = targets.load(name)
        backend = backends.get(t.backend)
        pre = t.preprocess
        shape = f"{len(pre.buckets)} buckets" if pre.mode == "buckets" else pre.describe().replace("letterbox ", "")
        here = "no" if backend.unavailable_for(t) else "yes"
        if here == "no" and backend.emulation is not None:
            here = "emulated"
            emulated.append(t.name)
        grid.add(t.name, t.summary or t.description, t.precision, shape.replace("native /32", "native"), t.runs_in, here)
    show(out, grid)
    example = emulated[0] if emulated else "t4"
    for line in ("here: yes runs on this machine, as in", "  make target=cpu",
                 "emulated: the device's numerics (its AP, never its speed) run on this CPU, as in",
                 f"  python -m toolkit run --target {example} --mode emulate",
                 "no: needs its device. native: each image at its own size, rounded up to 32.",
                 "What a target lacks here:", "  python -m toolkit doctor"):
        say(out, line)


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
# What `--help` lists for each command, whole (Click would cut the docstring's first sentence to fit).
SHORT = {
    "fetch-weights": "Get the official CenterFace ONNX weights.", "port": "Port the official weights to PyTorch.",
    "export": "Export the PyTorch model to ONNX.", "parity": "Check PyTorch against the official ONNX.",
    "detect": "Find or hide faces in images and videos.", "convert": "Convert the ONNX for a target.",
    "run": "A target's whole chain: convert, infer, AP.", "evaluate": "WIDER FACE AP of a predictions folder.",
    "bench": "Benchmark a target (images, video, service).", "calibrate": "Quantise to INT8 and compare.",
    "serve": "Serve a target's deployment over HTTP.", "report": "One table across every run.",
    "compare-outputs": "Compare the raw outputs of two runs.", "doctor": "What this machine can run.",
    "build": "Build a target's Docker image.", "base-image": "Make the Debian base image.",
    "targets": "List the targets.", "version": "Print the toolkit version.",
}
for name, command in COMMANDS.items():
    app.command(name, short_help=SHORT[name])(command)


def main() -> None:
    runfolder.handle_sigterm()  # SIGTERM unwinds like Ctrl-C: run folders roll back, nothing half-written stays
    app()

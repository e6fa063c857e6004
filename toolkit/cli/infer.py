"""Inference commands: detect on any images, convert for a target, run a target's whole chain."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from toolkit import backends, fileio, pipeline, targets
from toolkit.chain import STAGES, ChainOptions, check_stages, run_chain
from toolkit.cli.common import console, handle_errors, out, progress
from toolkit.cli.containers import (DeviceIdsOpt, ModeOpt, built_image, container_spec, flags, in_container,
                                    parse_device_ids, record_image, resolve_mode)
from toolkit.containers import runspec
from toolkit.data.images import list_images, read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw, save
from toolkit.errors import InputError
from toolkit.paths import default_dataset, runs_dir
from toolkit.postprocess import Detections

app = typer.Typer(no_args_is_help=True)

PreprocessOpt = Annotated[Optional[str], typer.Option(help="native (size rounded up to 32) or letterbox (fixed size, see --size).")]
SizeOpt = Annotated[Optional[str], typer.Option(help="Letterbox size WxH, e.g. 800x800 or 1024x1024.")]


def _preprocess(mode: str | None, size: str | None, default: Preprocess | None = None) -> Preprocess | None:
    if mode is None and size is None:
        return default
    return Preprocess.parse(mode or "letterbox", size or "800x800")


@app.command("detect")
@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for detections.json and the drawn pictures.")] = Path("detections"),
    model: Annotated[Optional[Path], typer.Option(help="An ONNX model (default: the official weights, made dynamic).")] = None,
    threshold: Annotated[float, typer.Option(help="Keep detections scoring at least this.")] = 0.5,
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    pictures: Annotated[bool, typer.Option(help="Write each image with its detections drawn.")] = True,
) -> None:
    """Detect faces (boxes, scores, 5 landmarks) on images; write detections.json and pictures."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.model import official, weights

    pre = _preprocess(preprocess, size, Preprocess("native"))
    files = [f for p in images for f in list_images(p)]
    found: dict[str, Detections] = {}
    source = model if model else official.dynamic_model_bytes(weights.fetch())
    with OnnxRuntimeRunner(source) as runner, progress() as bar:
        task = bar.add_task("detect", total=len(files))
        pipeline.run([(str(i), f) for i, f in enumerate(files)], runner, pre,
                     lambda key, det, _o: found.__setitem__(key, det), threshold=threshold,
                     on_progress=lambda n: bar.advance(task, n))
    result = {}
    for i, f in enumerate(files):
        det = found[str(i)]
        result[str(f)] = det.as_json()
        if pictures:
            save(out_dir / "pictures" / f"{i:04d}_{f.stem}.jpg", draw(read_rgb(f), det))
    fileio.write_json(out_dir / "detections.json", result)
    total = sum(len(d) for d in found.values())
    out.print(f"{total} faces in {len(files)} images -> {out_dir / 'detections.json'}"
              + (f", pictures in {out_dir / 'pictures'}" if pictures else ""))


@app.command("convert")
@handle_errors
def convert(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")],
    onnx_path: Annotated[Path, typer.Option("--onnx", help="The exported ONNX model.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the converted artefact.")] = Path("."),
) -> None:
    """Convert an exported ONNX for a target (for the CPU: ONNX Runtime's optimised graph)."""
    spec = targets.load(target)
    backend = backends.require(spec.backend, spec.name)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path}: no such file")
    out.print(f"wrote {backend.convert(onnx_path, spec, out_dir)}")


@app.command("run")
@handle_errors
def run(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (WIDER_val/, eval_tools/). Default: the shared val subset when present, else a sample image.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images (a quick slice).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>).")] = None,
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the target's batch size.")] = None,
    weights_path: Annotated[Optional[Path], typer.Option("--weights", help="A local official centerface.onnx.")] = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages to run: export (weights -> .pth -> ONNX), convert (INT8: calibrate), infer (inference, AP, result.json).")] = ",".join(STAGES),
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
    dry_run: Annotated[bool, typer.Option(help="Print every step (exact command lines, files written) without running; writes plan.json and config files such as the AIPP file.")] = False,
) -> None:
    """Run a target's whole chain: weights, .pth, ONNX, convert, inference, WIDER FACE AP, result.json.

    In a container (--mode container, or a target whose file says runs_in = "container") the host
    exports the ONNX (it has PyTorch) and the target's image converts, infers and evaluates on the
    same bind-mounted run folder.
    """
    spec = targets.load(target)
    chosen = check_stages(tuple(s.strip() for s in stages.split(",") if s.strip()))
    if data is not None and not data.is_dir():
        raise InputError(f"{data}: no such dataset folder", "pass the WIDER FACE root that holds WIDER_val/")
    data = data if data is not None else default_dataset()
    opts = ChainOptions(spec, out_dir or runs_dir() / spec.name, data, weights_path, limit,
                        _preprocess(preprocess, size), batch_size, chosen)
    if dry_run:
        show_plan(spec, opts, resolve_mode(mode, spec), parse_device_ids(device_ids))
        return
    if resolve_mode(mode, spec) == "container":
        config = built_image(spec, parse_device_ids(device_ids))  # before any work
        inside, image_id = [s for s in chosen if s != "export"], None
        if "export" in chosen:
            with progress() as bar:
                run_chain(replace(opts, stages=("export",)), console.print, bar)
        if inside:
            pipeline.check_batch_size(batch_size if batch_size is not None else spec.batch_sizes[0])
            passed = flags([("--limit", limit), ("--preprocess", preprocess), ("--size", size),
                            ("--batch-size", batch_size)])
            image_id = in_container(config, ["run", "--target", spec.name, "--stages", ",".join(inside), *passed],
                                    opts.out_dir, data, parse_device_ids(device_ids))
        if image_id and "infer" in chosen:  # the container showed its table
            record_image(opts.out_dir / "result.json", config, image_id, data)
            out.print(f"result: {opts.out_dir / 'result.json'}")
        return
    with progress() as bar:
        result = run_chain(opts, console.print, bar)
    if "infer" in chosen:
        show_result(result)
        out.print(f"result: {opts.out_dir / 'result.json'}")
    else:
        out.print(f"stages {', '.join(chosen)} done in {opts.out_dir}")


def show_plan(spec: targets.Target, opts: ChainOptions, where: str, device_ids: list[int] | None) -> None:
    """The plan, on the terminal and in plan.json; nothing runs."""
    from toolkit.containers.config import ContainerConfig

    out_dir = opts.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = Path(runspec.container_path(out_dir)) if where == "container" else out_dir
    backend = backends.get(spec.backend)
    steps, reason = backend.dry_run(spec, out_dir, shown), backend.unavailable()
    out.print(f"plan for {spec.name} ({spec.backend}, {spec.precision}), run folder {out_dir}"
              + (f"; here: unavailable: {reason}" if reason else ""))
    container = None
    if where == "container":
        container = container_spec(ContainerConfig.of(spec), ["run", "--target", spec.name, "--stages", "convert,infer"],
                                   out_dir, opts.data, device_ids).docker_cli()
        out.print("the host runs the export step, then:", soft_wrap=True)
        out.print(shlex.join(container), soft_wrap=True, markup=False)
    for number, step in enumerate(steps, 1):
        out.print(f"{number:2d}. {step.title}", markup=False)
        if step.command:
            out.print(f"    $ {step.shell()}", soft_wrap=True, markup=False)
        for path in step.writes:
            out.print(f"    -> {path}", soft_wrap=True, markup=False)
    fileio.write_json(out_dir / "plan.json", {"target": spec.name, "runs_in": where, "unavailable": reason,
                                              "container": container,
                                              "steps": [{"title": s.title, "command": s.command, "writes": s.writes}
                                                        for s in steps]})


def show_result(result: dict) -> None:
    table = Table(title=f"{result['target']} ({result['backend']}, {result['precision']}), {result['images']} images")
    for col in ("preprocess", "easy", "medium", "hard", "images/s", "wall s"):
        table.add_column(col, justify="right")
    ap = result["ap"] or {}
    pre = result["preprocess"]
    thr = result["throughput"]
    table.add_row(
        pre["mode"] + (f" {pre['width']}x{pre['height']}" if pre["width"] else ""),
        *(f"{ap[s]:.4f}" if s in ap else "-" for s in ("easy", "medium", "hard")),
        f"{thr['images_per_s']}", f"{sum(result['timings_s'].values()):.1f}",
    )
    out.print(table)

"""Inference commands: detect on any images, convert for a target, run a target's whole chain."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from toolkit import backends, fileio, pipeline, runfolder, targets
from toolkit.chain import STAGES, ChainOptions, check_limit, check_stages, run_chain
from toolkit.cli.common import console, handle_errors, out, progress
from toolkit.cli.containers import (DeviceIdsOpt, ModeOpt, built_image, container_spec, flags, in_container,
                                    parse_device_ids, record_image, resolve_mode)
from toolkit.containers import runspec
from toolkit.data.images import list_images, read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw, save
from toolkit.errors import InputError
from toolkit.paths import default_dataset, runs_dir
from toolkit.model.signature import check_onnx_file
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
    if model is not None:
        check_onnx_file(model)
    found: dict[str, Detections] = {}
    source = model if model else official.dynamic_model_bytes(weights.fetch())
    with runfolder.transaction(out_dir, "detect", fresh=("pictures", "detections.json")) as staged:
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
                save(staged / "pictures" / f"{i:04d}_{f.stem}.jpg", draw(read_rgb(f), det))
        fileio.write_json(staged / "detections.json", result)
    total = sum(len(d) for d in found.values())
    out.print(f"{total} faces in {len(files)} images -> {out_dir / 'detections.json'}"
              + (f", pictures in {out_dir / 'pictures'}" if pictures else ""))


@app.command("convert")
@handle_errors
def convert(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")],
    onnx_path: Annotated[Path, typer.Option("--onnx", help="The exported ONNX model.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the converted artefact (default runs/<target>).")] = None,
) -> None:
    """Convert an exported ONNX for a target (for the CPU: ONNX Runtime's optimised graph)."""
    spec = targets.load(target)
    backend = backends.require(spec.backend, spec.name)
    check_onnx_file(onnx_path)
    out_dir = out_dir or runs_dir() / spec.name
    with runfolder.transaction(out_dir, f"convert --target {spec.name}") as staged:
        made = backend.convert(onnx_path.resolve(), spec, staged)
    out.print(f"wrote {out_dir / made.relative_to(staged)}")


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
    skip_bad: Annotated[bool, typer.Option(help="Record each unreadable image (and why) in result.json and go on; default: stop at the first.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print every step (exact command lines, files written) without running; writes plan.json and config files such as the AIPP file.")] = False,
) -> None:
    """Run a target's whole chain: weights, .pth, ONNX, convert, inference, WIDER FACE AP, result.json.

    In a container (--mode container, or a target whose file says runs_in = "container") the host
    exports the ONNX (it has PyTorch) and the target's image converts, infers and evaluates on the
    same bind-mounted run folder. The run folder changes only when the whole command succeeds.
    """
    spec = targets.load(target).overridden(_preprocess(preprocess, size), batch_size)
    chosen = check_stages(tuple(s.strip() for s in stages.split(",") if s.strip()))
    check_limit(limit)
    if data is not None and not data.is_dir():
        raise InputError(f"{data}: no such dataset folder", "pass the WIDER FACE root that holds WIDER_val/")
    data = data if data is not None else default_dataset()
    opts = ChainOptions(spec, out_dir or runs_dir() / spec.name, data, weights_path, limit, stages=chosen,
                        skip_bad=skip_bad)
    where, ids = resolve_mode(mode, spec), parse_device_ids(device_ids)
    inside = ["run", "--target", spec.name, "--stages", ",".join(s for s in chosen if s != "export"),
              *flags([("--limit", limit), ("--preprocess", preprocess), ("--size", size), ("--batch-size", batch_size)]),
              *(["--skip-bad"] if skip_bad else [])]
    if dry_run:
        with runfolder.transaction(opts.out_dir, "run --dry-run") as staged:
            show_plan(spec, replace(opts, out_dir=staged), where, ids, inside, opts.out_dir)
        return
    config = built_image(spec, ids) if where == "container" else None  # before any work
    with runfolder.transaction(opts.out_dir, f"run --target {spec.name}") as staged, progress() as bar:
        staged_opts = replace(opts, out_dir=staged)
        if config is None:
            result = run_chain(staged_opts, console.print, bar)
        else:
            if "export" in chosen:
                run_chain(replace(staged_opts, stages=("export",)), console.print, bar)
            if len(chosen) > ("export" in chosen):
                image_id = in_container(config, inside, staged, data, ids)
                if "infer" in chosen:
                    record_image(staged / "result.json", config, image_id, data)
            result = None
    if result is not None and "infer" in chosen:
        show_result(result)
    out.print(f"result: {opts.out_dir / 'result.json'}" if "infer" in chosen
              else f"stages {', '.join(chosen)} done in {opts.out_dir}")


def show_plan(spec: targets.Target, opts: ChainOptions, where: str, device_ids: list[int] | None,
              inside: list[str], shown_dir: Path) -> None:
    """The plan, on the terminal and in plan.json (written into `opts.out_dir`); nothing runs. Paths
    and the container command name the run folder `shown_dir`, as the real run's would."""
    from toolkit.containers.config import ContainerConfig

    shown = Path(runspec.container_path(shown_dir)) if where == "container" else shown_dir
    backend = backends.get(spec.backend)
    steps, reason = backend.dry_run(spec, opts.out_dir, shown), backend.unavailable()
    out.print(f"plan for {spec.name} ({spec.backend}, {spec.precision}), run folder {shown_dir}"
              + (f"; here: unavailable: {reason}" if reason else ""))
    container = None
    if where == "container":
        container = container_spec(ContainerConfig.of(spec), inside, shown_dir, opts.data, device_ids).docker_cli()
        out.print("the host runs the export step, then:", soft_wrap=True)
        out.print(shlex.join(container), soft_wrap=True, markup=False)
    for number, step in enumerate(steps, 1):
        out.print(f"{number:2d}. {step.title}", markup=False)
        if step.command:
            out.print(f"    $ {step.shell()}", soft_wrap=True, markup=False)
        for path in step.writes:
            out.print(f"    -> {path}", soft_wrap=True, markup=False)
    fileio.write_json(opts.out_dir / "plan.json", {"target": spec.name, "runs_in": where, "unavailable": reason,
                                                   "container": container,
                                                   "steps": [{"title": s.title, "command": s.command, "writes": s.writes}
                                                             for s in steps]})


def show_result(result: dict) -> None:
    table = Table(title=f"{result['target']} ({result['backend']}, {result['precision']}), {result['images']} images")
    for col in ("preprocess", "easy", "medium", "hard", "images/s", "wall s"):
        table.add_column(col, justify="right")
    ap = {k: v for k, v in (result["ap"] or {}).items() if v is not None}
    pre = result["preprocess"]
    thr = result["throughput"]
    table.add_row(
        pre["mode"] + (f" {pre['width']}x{pre['height']}" if pre["width"] else ""),
        *(f"{ap[s]:.4f}" if s in ap else "-" for s in ("easy", "medium", "hard")),
        f"{thr['images_per_s']}", f"{sum(result['timings_s'].values()):.1f}",
    )
    out.print(table)

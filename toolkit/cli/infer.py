"""Inference commands: detect on any images, convert for a target, run a target's whole chain."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import calibration, reading, targets
from toolkit.chain import STAGES, ChainOptions, check_limit, check_stages, parse_part
from toolkit.cli.common import handle_errors, log, out, progress
from toolkit.cli.layout import Col, Grid, say, say_command, show
from toolkit.cli.containers import AddressOpt, DeviceIdsOpt, EngineOpt, ModeOpt, WorkersOpt, parse_device_ids, parse_engine
from toolkit.containers.launch import resolve_mode
from toolkit.data.preprocess import Preprocess, describe_preprocess
from toolkit.data.wider import SETTINGS
from toolkit.errors import InputError
from toolkit.flows import run as run_flow
from toolkit.paths import default_dataset, runs_dir

PreprocessOpt = Annotated[Optional[str], typer.Option(help="native (each image at its size rounded up to 32), letterbox (one fixed size, see --size) or buckets (the nearest of several sizes, see --size).")]
SizeOpt = Annotated[Optional[str], typer.Option(help="Letterbox size WxH, e.g. 800x800 or 1024x1024; for buckets, their sizes WxH,WxH,...")]
CalibDataOpt = Annotated[Optional[Path], typer.Option("--calib-data", help="An INT8 target calibrates on this folder's images (any images, searched recursively: the first of them, as many as its recipe's count) instead of the recipe's WIDER list; none of them is ever evaluated.")]
TtaOpt = Annotated[bool, typer.Option(help="Test-time augmentation: each image at several scales, some mirrored, the passes' detections merged (the target file's [tta], else 1x and its mirror, 0.5x, and 2x where the 1x pass found small faces; box voting).")]


def _preprocess(mode: str | None, size: str | None, default: Preprocess | None = None) -> Preprocess | None:
    if mode is None and size is None:
        return default
    if mode == "native" and size is not None:
        raise InputError(f"--size {size} with --preprocess native: native inputs keep each image's own size",
                         "leave out --size, or pass --preprocess letterbox")
    return Preprocess.parse(mode or "letterbox", size or "800x800")


@handle_errors
def convert_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")],
    onnx_path: Annotated[Path, typer.Option("--onnx", help="The exported ONNX model.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the converted artefact (default runs/<target>).")] = None,
) -> None:
    """Convert an exported ONNX for a target (for the CPU: ONNX Runtime's optimised graph)."""
    spec = targets.load(target)
    say(out, f"wrote {run_flow.convert_model(spec, onnx_path, out_dir or runs_dir() / spec.name)}")


@handle_errors
def run_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (WIDER_val/, eval_tools/). Default: the shared val subset when present, else a sample image.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images (a quick slice).")] = None,
    part: Annotated[Optional[str], typer.Option(help="K/N: every N-th image from the K-th (one part of the data set, to choose a setting on one part and confirm it on another).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>, with --tta runs/<target>-tta).")] = None,
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the target's batch size.")] = None,
    tta: TtaOpt = False,
    calib_data: CalibDataOpt = None,
    weights_path: Annotated[Optional[Path], typer.Option("--weights", help="A local official centerface.onnx.")] = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages to run: export (weights -> .pth -> ONNX), convert (INT8: calibrate), infer (inference, AP, result.json).")] = ",".join(STAGES),
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
    skip_bad: Annotated[bool, typer.Option(help="Record each unreadable image (and why) in result.json and go on; default: stop at the first.")] = False,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = 2,
    dry_run: Annotated[bool, typer.Option(help="Print every step (exact command lines, files written) without running; writes plan.json and config files such as the AIPP file.")] = False,
) -> None:
    """Run a target's whole chain: weights, .pth, ONNX, convert, inference, WIDER FACE AP, result.json.

    In a container (--mode container, or a target whose file says runs_in = "container") the host
    exports the ONNX (it has PyTorch) and the target's image converts, infers and evaluates on the
    same bind-mounted run folder. The run folder changes only when the whole command succeeds.
    """
    spec = targets.load(target).overridden(_preprocess(preprocess, size), batch_size).on_devices(
        parse_device_ids(device_ids)).with_tta(tta)
    spec = calibration.with_images(spec, calib_data)
    chosen = check_stages(tuple(s.strip() for s in stages.split(",") if s.strip()))
    check_limit(limit)
    if data is not None:
        reading.folder(data, "dataset folder", "pass the WIDER FACE root that holds WIDER_val/")
    opts = ChainOptions(spec, out_dir or runs_dir() / spec.folder, data if data is not None else default_dataset(),
                        weights_path, limit, parse_part(part), stages=chosen, skip_bad=skip_bad,
                        cluster=parse_engine(engine, address, workers))
    where = resolve_mode(mode, spec)
    passed = [("--limit", limit), ("--part", part), ("--preprocess", preprocess), ("--size", size), ("--batch-size", batch_size)]
    if dry_run:
        show_plan(run_flow.plan(opts, where, passed))
        return
    with progress() as bar:
        result = run_flow.run_target(opts, where, passed, log, bar)
    if result is not None:
        show_result(result)
    say(out, f"result: {opts.out_dir / 'result.json'}" if "infer" in chosen
             else f"stages {', '.join(chosen)} done in {opts.out_dir}")


def show_plan(plan: dict) -> None:
    reason = plan["unavailable"]
    say(out, f"plan for {plan['target']} ({plan['backend']}, {plan['precision']}), run folder {plan['run_folder']}"
             + (f"; here: unavailable: {reason}" if reason else ""))
    if plan["container"]:
        say(out, f"the host runs the export step, then, as {plan['container_user']}:")
        say_command(out, plan["container"])
    for number, step in enumerate(plan["steps"], 1):
        say(out, f"{number:2d}. {step['title']}")
        if step["shell"]:
            say_command(out, shlex.split(step["shell"]), "    $ ")
        for path in step["writes"]:
            out.print(f"    -> {path}", soft_wrap=True)


def show_result(result: dict) -> None:
    emulated = result.get("emulated")
    simulation = result.get("simulation")
    title = (f"{result['target']} ({result['backend']}, {result['precision']}), {result['images']} images"
             + (f", EMULATED on this CPU ({result['emulation']['numerics']})" if emulated else "")
             + (f", SIMULATED {simulation['device']} x {simulation['devices']}: host side only, no AP"
                if simulation else ""))
    speed = [] if emulated else [Col("images/s", figure=True)]
    grid = Grid(title, [Col("run", right=False), Col("input", 1, right=False),
                        *(Col(s, figure=True) for s in SETTINGS), *speed, Col("wall s", 2)])
    ap = {k: v for k, v in (result["ap"] or {}).items() if v is not None}
    grid.add("this run", describe_preprocess(result["preprocess"]),
             *(f"{ap[s]:.4f}" if s in ap else "-" for s in SETTINGS),
             *([] if emulated else [f"{result['throughput']['images_per_s']}"]),
             f"{sum(result['timings_s'].values()):.1f}")
    if emulated and result.get("reference"):
        ref = result["reference"]["ap"]
        grid.add("CPU FP32", "the same", *(f"{ref[s]:.4f}" if ref.get(s) is not None else "-" for s in SETTINGS), "")
    show(out, grid)
    if emulated:
        say(out, "images/s: not measured; emulated numerics on this CPU say nothing of the device's speed")

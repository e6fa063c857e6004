"""`detect`: faces on images, videos, image sequences, streams and cameras, with a target's deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import targets
from toolkit.cli.common import console, handle_errors, in_range, log, out, progress
from toolkit.cli.layout import say
from toolkit.cli.containers import DeviceIdsOpt, ModeOpt, parse_device_ids
from toolkit.cli.infer import PreprocessOpt, SizeOpt, _preprocess
from toolkit.containers.launch import resolve_mode
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError
from toolkit.flows import detect as flow
from toolkit.media.anonymize import MODES, Anonymizer
from toolkit.paths import default_dataset, runs_dir

InputsArg = Annotated[list[str], typer.Argument(
    metavar="INPUT", help="Images or folders (their images and videos, searched recursively), video files (mp4, mkv, mov, avi, "
         "webm), an image sequence (frames/%05d.png), a stream URL (rtsp://, http://) or a camera index (0).",
)]


@handle_errors
def detect_cmd(
    inputs: InputsArg,
    target: Annotated[Optional[str], typer.Option(help="Detect with this target's deployment: its run folder's converted model, input, batch size and devices, as the report measured it (default cpu).")] = None,
    from_dir: Annotated[Optional[Path], typer.Option("--from", help="The target's run folder (default runs/<target>); converted first where it holds no converted model.")] = None,
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="An ONNX model in ONNX Runtime instead of a target's deployment.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for detections.json, the pictures, each video's JSON Lines and video (default runs/detect).")] = None,
    min_score: Annotated[float, typer.Option("--min-score", "--threshold", help="Keep faces scoring at least this.")] = 0.5,
    min_size: Annotated[float, typer.Option(help="Keep faces at least this many pixels across (the square root of the box's area).")] = 0.0,
    anonymize: Annotated[str, typer.Option(help="Hide each face: blur, mosaic, solid, or none (draw the detections instead).")] = "none",
    mask_scale: Annotated[float, typer.Option(help="Hide this much around each face's box (1.3: 30% wider and taller).")] = 1.3,
    boxes: Annotated[bool, typer.Option(help="Hide the box itself instead of the ellipse inside it.")] = False,
    smooth: Annotated[int, typer.Option(help="Videos: cover a face missed for up to this many frames between two that found it (0: off).")] = 2,
    start: Annotated[float, typer.Option(help="Videos: from this second.")] = 0.0,
    end: Annotated[Optional[float], typer.Option(help="Videos: up to this second (a stream or camera: for this long).")] = None,
    fps: Annotated[float, typer.Option(help="Image sequences: their frame rate.")] = 25.0,
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    pictures: Annotated[bool, typer.Option(help="Write the pictures and videos (faces hidden or drawn), not only the detections.")] = True,
    skip_bad: Annotated[bool, typer.Option(help="Record each unreadable image (and why) in detections.json and go on; default: stop at the first.")] = False,
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root, for an INT8 target converted first (its calibration).")] = None,
) -> None:
    """Detect faces (boxes, scores, 5 landmarks) on images and videos with a target's deployment; hide them
    (blur, mosaic, solid) or draw them; write detections.json, pictures, and each video's JSON Lines and video."""
    in_range("--min-score", min_score, 0, 1)
    in_range("--min-size", min_size, 0)
    in_range("--mask-scale", mask_scale, 0.1, 10)
    in_range("--start", start, 0)
    in_range("--fps", fps, 0.001)
    if end is not None and (in_range("--end", end, 0) <= start):
        raise InputError(f"--end {end:g}: must come after --start {start:g}")
    if smooth < 0:
        raise InputError(f"--smooth {smooth}: must be 0 or more")
    if anonymize not in MODES:
        raise InputError(f"--anonymize {anonymize!r}: choose from {', '.join(MODES)}")
    options = flow.DetectOptions(min_score, min_size, Anonymizer(anonymize, mask_scale, not boxes), smooth, start, end,
                                 pictures, skip_bad, fps)
    folder = out_dir or runs_dir() / "detect"
    with progress() as bar:
        if model is not None:
            if target is not None or from_dir is not None:
                raise InputError("--model runs an ONNX model of yours; --target and --from run a target's deployment",
                                 "give one of them")
            summary = flow.detect(inputs, folder, flow.Detector.of_model(model, _preprocess(preprocess, size, Preprocess("native"))),
                                  options, log, bar)
        else:
            if preprocess is not None or size is not None:
                raise InputError("--preprocess and --size go with --model: a target's deployment takes its own input")
            spec = targets.load(target or "cpu").on_devices(parse_device_ids(device_ids))
            where = resolve_mode(mode, spec)
            summary = flow.detect_with_target(inputs, folder, spec, where, from_dir or runs_dir() / spec.name,
                                              data or default_dataset(), options, log, bar)
    _show(summary, folder, pictures)


def _show(summary: dict, folder: Path, pictures: bool) -> None:
    made = summary["made_with"]
    faces = sum(len(f) for f in summary["images"].values())
    said = [f"{faces} faces in {len(summary['images'])} images"] if summary["images"] or not summary["videos"] else []
    said += [f"{v['frames']} frames of {Path(spec).name}" for spec, v in summary["videos"].items()]
    emulated = ", EMULATED on this CPU" if made.get("emulated") else ""
    say(out, f"{'; '.join(said)} with {made.get('target') or made.get('model')}{emulated} -> {folder / flow.RESULT}"
             + (f", pictures in {folder / flow.PICTURES}" if pictures and summary["images"] else ""))
    for path, why in summary["skipped"].items():
        say(console, f"skipped {why}")

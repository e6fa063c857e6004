"""`detect`: faces on images and videos with a target's deployment (the numerics the report measured) or an ONNX
model, into a folder `detect` owns (toolkit/ownership.py): `detections.json` (every image's faces, named fields,
and a summary of every video), `pictures/` (the images with their faces hidden or drawn), and for each video
`<name>.jsonl` (a record a frame) and `<name>.<anonymized|annotated>.<ext>` (its container, frame rate and
audio). A re-run replaces all of it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import deployment, fileio, ownership, pipeline, reading, runfolder
from toolkit.backends.base import Runner
from toolkit.containers import launch, runspec
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.deployment import Deployment
from toolkit.draw import draw, save
from toolkit.errors import InputError
from toolkit.flows.video import Faces, VideoJob, finish
from toolkit.media.anonymize import Anonymizer, kept
from toolkit.media.sinks import check_writable_codec
from toolkit.media.sources import Video, expand, is_video
from toolkit.model.signature import check_onnx_file
from toolkit.postprocess import Detections
from toolkit.progress import counter
from toolkit.target import Target

RESULT = "detections.json"
PICTURES = "pictures"


@dataclass(frozen=True)
class Detector:
    """What detections are made with: a runner, its input, batch size, and what every output says of it."""

    make_runner: Callable[[], Runner]
    preprocess: Preprocess
    batch_size: int
    made_with: dict
    emulated: bool = False

    @classmethod
    def of_model(cls, model: Path, pre: Preprocess) -> Detector:
        """An exported CenterFace ONNX model of the user's, in ONNX Runtime."""
        from toolkit.backends.onnxruntime import OnnxRuntimeRunner

        check_onnx_file(model)
        return cls(lambda: OnnxRuntimeRunner(model), pre, 1,
                   {"model": str(model), "runtime": "onnxruntime", "preprocess": pre.as_dict(), "emulated": False})

    @classmethod
    def of_deployment(cls, deployed: Deployment) -> Detector:
        target = deployed.target
        return cls(deployed.runner, target.preprocess, target.batch_sizes[0], deployed.describe(), deployed.emulated)


@dataclass(frozen=True)
class DetectOptions:
    min_score: float = 0.5
    min_size: float = 0.0
    anonymizer: Anonymizer = Anonymizer()
    smooth: int = 2  # frames a face may be missed for and still be covered (0: none)
    start: float = 0.0
    end: float | None = None
    media: bool = True  # write the pictures and videos, not only the detections
    skip_bad: bool = False
    fps_for_sequence: float = 25.0

    def faces(self, emulated: bool) -> Faces:
        return Faces(self.min_score, self.min_size, self.anonymizer, self.smooth, emulated)

    def cli_args(self) -> list[str]:
        """The same options as `detect` arguments (what a target's image runs)."""
        return ["--min-score", str(self.min_score), "--min-size", str(self.min_size), "--anonymize", self.anonymizer.mode,
                "--mask-scale", str(self.anonymizer.mask_scale), "--boxes" if not self.anonymizer.ellipse else "--no-boxes",
                "--smooth", str(self.smooth), "--start", str(self.start), *(["--end", str(self.end)] if self.end else []),
                "--fps", str(self.fps_for_sequence), "--pictures" if self.media else "--no-pictures",
                *(["--skip-bad"] if self.skip_bad else [])]


def detect_with_target(inputs: list[str], out_dir: Path, target: Target, where: str, run_dir: Path, data: Path | None,
                       options: DetectOptions, log: Callable[[str], None], progress=None) -> dict:
    """`detect` with the target's deployment in `run_dir` (converted first where it has none), where the target
    runs: on this host (its numerics emulated, with `where` emulate) or in its image. The inputs and the detect
    folder are checked before any conversion."""
    expand(inputs)
    ownership.check_folder(Path(os.path.realpath(out_dir)), "detect")
    live = [spec for spec in inputs if is_video(spec) and Video(spec).live]
    if where == "container" and live:
        raise InputError(f"{live[0]}: a stream or camera, which a target's container cannot reach (it has no "
                         "network and no camera)", "detect it with --mode host or --mode emulate")
    deployed = deployment.load(target, run_dir, where, data, log, progress)
    if where != "container":
        return detect(inputs, out_dir, Detector.of_deployment(deployed), options, log, progress)
    return _in_container(inputs, out_dir, target, run_dir, options, log)


def _in_container(inputs: list[str], out_dir: Path, target: Target, run_dir: Path, options: DetectOptions,
                  log: Callable[[str], None]) -> dict:
    """The same command in the target's image: the inputs and the run folder mounted read-only (the inputs at
    their own paths, so detections.json names them as here), the detect folder staged here and mounted."""
    config = launch.built_image(target, target.device_ids)
    shown = [str(Path(spec).resolve()) for spec in inputs]
    mounts = (runspec.Mount(str(run_dir.resolve()), f"/from/{run_dir.resolve().name}", True),
              *{runspec.Mount(p, p, True) for p in (str(Path(s).parent) if "%" in s else s for s in shown)})
    args = ["detect", *shown, "--target", target.name, "--from", f"/from/{run_dir.resolve().name}",
            *options.cli_args(), *launch.device_flags(target)]
    earlier = ownership.entries(out_dir) if out_dir.is_dir() else []
    with runfolder.transaction(out_dir, f"detect --target {target.name}", fresh=earlier, kind="detect") as staged:
        launch.in_container(config, args, staged, None, target.device_ids, log, tuple(mounts))
        return reading.read_json(staged / RESULT, {"made_with": dict, "images": dict, "videos": dict})


def detect(inputs: list[str], out_dir: Path, detector: Detector, options: DetectOptions, log: Callable[[str], None],
           progress=None) -> dict:
    """Every image and video named, into `out_dir` (all of it, or none of it); the summary written."""
    images, videos = expand(inputs)
    if options.media:
        for spec in videos:
            check_writable_codec(Video(spec).suffix)
    earlier = ownership.entries(out_dir) if out_dir.is_dir() else []  # a folder not detect's own is refused
    summary: dict = {"made_with": detector.made_with, "images": {}, "skipped": {}, "videos": {}}
    with runfolder.transaction(out_dir, "detect", fresh=earlier, kind="detect") as staged, detector.make_runner() as runner:
        if images:
            _images(images, runner, detector, options, staged, summary, progress)
        for spec in videos:
            summary["videos"][spec] = _video(spec, runner, detector, options, staged, log, progress)
        fileio.write_json(staged / RESULT, summary)
    return summary


def _images(files: list[Path], runner: Runner, detector: Detector, options: DetectOptions, staged: Path,
            summary: dict, progress) -> None:
    found: dict[str, Detections] = {}
    skipped: dict[str, str] = {}
    pipeline.run([(str(i), f) for i, f in enumerate(files)], runner, detector.preprocess,
                 lambda key, det, _o: found.__setitem__(key, det), batch_size=detector.batch_size,
                 threshold=options.min_score, on_progress=counter(progress, "detect", len(files)),
                 on_bad=skipped.__setitem__ if options.skip_bad else None)
    for i, path in enumerate(files):
        if str(i) in skipped:
            summary["skipped"][str(path)] = skipped[str(i)]
            continue
        faces = kept(found[str(i)], options.min_score, options.min_size)
        summary["images"][str(path)] = faces.as_json()
        if options.media:
            save(staged / PICTURES / f"{i:04d}_{path.stem}.jpg", _picture(read_rgb(path), faces, options, detector))


def _picture(rgb, faces: Detections, options: DetectOptions, detector: Detector):
    """The picture written (BGR): faces hidden, or drawn where nothing is hidden; EMULATED where it was."""
    label = "EMULATED" if detector.emulated else None
    if options.anonymizer.mode == "none":
        return draw(rgb, faces, label=label)
    return draw(options.anonymizer.apply(rgb, faces), Detections(), label=label)


def _video(spec: str, runner: Runner, detector: Detector, options: DetectOptions, staged: Path,
           log: Callable[[str], None], progress) -> dict:
    video = Video(spec, options.start, options.end, options.fps_for_sequence)
    kind = "annotated" if options.anonymizer.mode == "none" else "anonymized"
    stem = _unique(staged, video.name)
    jsonl = staged / f"{stem}.jsonl"
    encoded = staged / f".{stem}.{kind}.video{video.suffix}" if options.media else None
    job = VideoJob(video, options.faces(detector.emulated), jsonl, encoded)
    summary = job.run(runner, detector.preprocess, detector.batch_size, _frame_counter(progress, video))
    summary.update(finish(job, encoded, staged / f"{stem}.{kind}{video.suffix}" if encoded else None))
    summary["jsonl"] = jsonl.name
    log(f"{spec}: {summary['frames']} frames ({video.ended})"
        + (f", {video.corrupt} corrupt frames skipped" if video.corrupt else ""))
    return summary


def _frame_counter(progress, video: Video) -> Callable[[int], None] | None:
    """A bar of the video's frames: its total is the container's frame count once the source has read it (a
    stream has none)."""
    if progress is None:
        return None
    task = progress.add_task(f"{video.name} (frames)", total=None)
    return lambda frames: progress.update(task, total=video.frames, advance=frames)


def _unique(folder: Path, stem: str) -> str:
    """`stem`, or `stem-2`, ... where two videos share a name."""
    taken = {p.name.split(".")[0] for p in folder.iterdir()}
    return next(s for s in [stem, *(f"{stem}-{n}" for n in range(2, 10000))] if s not in taken)

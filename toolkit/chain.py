"""The whole chain for one target: weights -> .pth -> ONNX -> convert -> infer -> evaluate -> result.json."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit import backends, calibration, fileio, machine, pipeline, quantization, reading, result_file, runfolder
from toolkit.backends.base import Backend
from toolkit.backends.emulated import EmulatedBackend
from toolkit.cluster import RayEngine
from toolkit.data import wider
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.wider import GroundTruth
from toolkit.draw import draw, save
from toolkit.errors import InputError, Unavailable
from toolkit.evaluate.deltas import ap_words
from toolkit.evaluate.wider_ap import Evaluation, evaluate, read_predictions
from toolkit.model import official, torch_parts, weights
from toolkit.model.signature import ExportShape
from toolkit.paths import sample_image
from toolkit.postprocess import Detections, write_wider
from toolkit.progress import counter
from toolkit.report import outputs as saved_outputs
from toolkit.target import Target

PARITY_IMAGES = 2
PICTURES = 4
RAW_OUTPUTS = 8  # images whose raw outputs are kept, to compare runs (compare-outputs)
DRAW_THRESHOLD = 0.5  # pictures show confident detections only
PREDICTIONS = "predictions"  # the WIDER-format prediction files, in the run folder
STAGES = ("export", "convert", "infer")  # weights -> .pth -> ONNX | artefact (INT8: calibrated) | inference -> AP
STATE_FILE = "stages.json"
# What the infer stage writes anew each time (result.json's run keys too): a re-run never leaves an earlier
# run's pictures or curves beside its result.
INFER_ENTRIES = (PREDICTIONS, "pictures", saved_outputs.FILE, "pr_curves.npz")
# stages.json as the stages write it: what a later stage reads of it
STATE_SHAPE = {"target": str,
               "export": (reading.OPTIONAL, {"weights": str, "pth": str, "onnx": str, "timings_s": dict,
                                             "parity": (reading.OPTIONAL, dict)}),
               "convert": (reading.OPTIONAL, {"artefact": str, "timings_s": dict, "emulated": bool,
                                              "calibration": (reading.OPTIONAL, dict)})}


@dataclass
class ChainOptions:
    target: Target
    out_dir: Path
    data: Path | None  # WIDER root; None -> the sample image
    weights: Path | None = None
    limit: int | None = None
    part: tuple[int, int] | None = None  # (k, n): every n-th image from the k-th (1-based), before --limit
    stages: tuple[str, ...] = STAGES  # any of them, run in chain order
    skip_bad: bool = False  # record unreadable images in result.json and go on (default: stop at the first)
    emulate: bool = False  # convert = the target's deployed numerics in ONNX Runtime on this CPU (--mode emulate)
    cluster: RayEngine | None = None  # --engine ray: inference sharded over Ray workers (None: this process)


def sample_images() -> list[tuple[str, Path]]:
    """The sample image as the chain's one (key, path) item, where no data set is given."""
    return [("sample/grace_hopper", sample_image())]


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be 1 or more (leave it out for every image)")


def parse_part(text: str | None) -> tuple[int, int] | None:
    """'1/2' -> (1, 2): one of n interleaved parts of the data set (every n-th image from the k-th)."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise InputError(f"--part {text}: expected K/N with 1 <= K <= N, such as 1/2")
    return int(k), int(n)


def dataset_items(root: Path, limit: int | None, part: tuple[int, int] | None = None,
                  unreadable: bool = False) -> list[tuple[str, Path]]:
    """The data set's (key, path) images, one part of them and the first `limit`; a part that selects no image
    is refused."""
    check_limit(limit)
    every = wider.list_val_images(root, unreadable)
    items = every[part[0] - 1::part[1]] if part else every
    if not items:
        raise InputError(f"--part {part[0]}/{part[1]}: selects no image ({root} has {len(every)})",
                         f"pass a part of at most {len(every)}")
    return items[:limit] if limit else items


class Stages:
    """Times each stage and reports it through `log`."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        self.log(f"✓ {name} ({self.seconds[name]:.1f} s)")
        return out


def parity(official_onnx: Path, net, exported: Path, batches: list[np.ndarray]) -> dict:
    """Largest |difference| per output: PyTorch vs the official ONNX, and our export vs PyTorch."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    _, exporter = torch_parts()
    with OnnxRuntimeRunner(official.dynamic_model_bytes(official_onnx)) as off, OnnxRuntimeRunner(exported) as ours:
        official_out = [official.rename_outputs(list(off.infer(b).values())) for b in batches]
        torch_out = [exporter.torch_outputs(net, b) for b in batches]
        export_out = [ours.infer(b) for b in batches]
    return {
        "images": len(batches),
        "pytorch_vs_official": exporter.max_abs_diff(official_out, torch_out),
        "onnx_export_vs_pytorch": exporter.max_abs_diff(torch_out, export_out),
    }


@dataclass
class ExportedModel:
    weights: Path
    pth: Path
    onnx: Path
    parity: dict | None  # None when no image was given to check it on


def export_model(target: Target, out: Path, weights_path: Path | None, stages: Stages,
                 parity_batches: list[np.ndarray]) -> ExportedModel:
    """Weights -> .pth -> ONNX (+ parity on real images), into `out`. Ctrl-C waits for the end of it
    (a few seconds): PyTorch's native code would abort the process if interrupted inside a callback."""
    with runfolder.deferred_interrupts():
        port, exporter = torch_parts()
        official_onnx = stages.run("weights", lambda: weights.verify(weights_path) if weights_path else weights.fetch())
        pth = stages.run("port to PyTorch (.pth)", port.port, official_onnx, out / "centerface.pth")
        net = port.load_module(pth)
        shape = ExportShape.parse(target.export_shape)
        onnx_path = stages.run("export ONNX + onnxsim", exporter.export, net, out / "centerface.onnx", shape,
                               target.export_opset)
        parity_result = stages.run("parity", parity, official_onnx, net, onnx_path, parity_batches) if parity_batches else None
    return ExportedModel(official_onnx, pth, onnx_path, parity_result)


def _parity_batches(items: list[tuple[str, Path]], pre: Preprocess, skip_bad: bool) -> list[np.ndarray]:
    """The first PARITY_IMAGES images that decode (with --skip-bad an unreadable one is passed over here, and
    recorded when inference meets it; without, it ends the run as anywhere else)."""
    batches = []
    for _, path in items:
        if len(batches) == PARITY_IMAGES:
            break
        try:
            batches.append(pre(read_rgb(path))[0][None])
        except InputError:
            if not skip_bad:
                raise
    return batches


def chosen_backend(target: Target, emulate: bool, on_device: bool, log: Callable[[str], None]) -> Backend:
    """The target's backend; with `emulate` its emulation (which needs only this CPU); `on_device`: it must
    be able to run here (convert and infer need it, export does not)."""
    backend = backends.get(target.backend)
    if emulate:
        backend = EmulatedBackend(backend, log)
    reason = backend.unavailable_for(target) if on_device or emulate else None
    if reason:
        raise Unavailable(f"target {target.name}: {reason}")
    return backend


@dataclass
class Images:
    """What the chain runs on: the (key, path) images, their ground truth (None: the sample image), and the
    images it will not run, with why (a link to a missing file)."""

    items: list[tuple[str, Path]]
    gt: GroundTruth | None
    skipped: dict[str, str]


def chosen_images(opts: ChainOptions, stages: Stages, log: Callable[[str], None]) -> Images:
    """The data set's images (the sample image without one); an INT8 target's calibration images left out."""
    target, pre, batch_size = opts.target, opts.target.preprocess, opts.target.batch_sizes[0]
    if opts.data is None:
        log("no WIDER FACE dataset: detecting on the sample image instead (pass DATA=<WIDER root>)")
        images = Images(sample_images(), None, {})
    else:
        items = dataset_items(opts.data, opts.limit, opts.part, unreadable=True)
        skipped = {k: why for k, p in items if (why := wider.not_a_file(p))}
        for why in skipped.values():
            log(f"skipped {why}")
        gt = stages.run("ground truth", wider.load_ground_truth, opts.data)
        images = Images([(k, p) for k, p in items if k not in skipped], gt, skipped)
    if not pre.sizes() and batch_size > 1:  # native sizes: the first readable image's stands for the rest
        first = _parity_batches(images.items, pre, skip_bad=True)[:1]
        pipeline.check_batch_size(batch_size, [(b.shape[3], b.shape[2]) for b in first])
    if target.precision == "int8":
        if images.gt is None:
            raise InputError(f"target {target.name}: INT8 calibration needs the WIDER FACE images",
                             "pass --data <WIDER root>")
        recipe = calibration.recipe_for(target)
        chosen = len(images.items)
        images.items = recipe.left_out(images.items)
        log(f"calibration images: {recipe.source()}; {chosen - len(images.items)} of the {chosen} chosen images are "
            "among them, left out of the evaluation")
        if not images.items:
            raise InputError(f"target {target.name}: the {chosen} images chosen are all calibration images "
                             f"({recipe.source()}), which an INT8 evaluation leaves out", "choose more images")
    if not images.items:
        raise InputError(f"{opts.data}: no image to run (every one was skipped: {next(iter(images.skipped.values()))})")
    return images


def run_chain(opts: ChainOptions, log: Callable[[str], None], progress=None) -> dict:
    """Run the chosen stages, write artefacts (and, for `infer`, result.json) into `opts.out_dir`.

    Each stage records what it made in stages.json, so a later stage can run elsewhere: the host
    exports (it has PyTorch), the target's container converts and infers on the same run folder.
    """
    target, out = opts.target, opts.out_dir
    pipeline.check_batch_size(target.batch_sizes[0], target.preprocess.sizes())  # before the run folder changes
    chosen = check_stages(opts.stages)
    out.mkdir(parents=True, exist_ok=True)
    backend = chosen_backend(target, opts.emulate, bool({"convert", "infer"} & set(chosen)), log)
    stages = Stages(log)
    state = {} if chosen[0] == "export" else own_state(out, target, chosen[0])
    images = chosen_images(opts, stages, log)
    if "export" in chosen:
        _export_stage(opts, state, stages, _parity_batches(images.items, target.preprocess, opts.skip_bad))
    if "export" not in state:
        raise InputError(f"{out}: no exported model recorded in {STATE_FILE}", f"run --stages export on {out} first")
    if "convert" in chosen:
        _convert_stage(opts, backend, state, images, stages, log, progress)
    if "infer" not in chosen:
        return state
    check_converted(out, state, opts.emulate)
    return _infer_stage(opts, backend, images, state, stages, log, progress)


def _export_stage(opts: ChainOptions, state: dict, stages: Stages, parity_batches: list[np.ndarray]) -> None:
    model = export_model(opts.target, opts.out_dir, opts.weights, stages, parity_batches)
    state["target"] = opts.target.name
    state["export"] = {"weights": str(model.weights), "pth": model.pth.name, "onnx": model.onnx.name,
                       "parity": model.parity, "timings_s": dict(stages.seconds)}
    _write_state(opts.out_dir, state)


def _convert_stage(opts: ChainOptions, backend: Backend, state: dict, images: Images, stages: Stages,
                   log: Callable[[str], None], progress) -> None:
    """The backend's artefact (INT8: calibrated and quantised) from the exported ONNX, recorded in stages.json."""
    target, out = opts.target, opts.out_dir
    onnx_path = out / state["export"]["onnx"]
    before = dict(stages.seconds)
    if target.precision == "int8":
        what = f"{'emulate' if opts.emulate else 'quantise'} ({backend.name}, {target.precision})"
        artefact, calibrated = stages.run(what, quantization.quantise, target, backend, onnx_path, opts.data,
                                          images.gt, out, images.items, log, progress)
    else:
        what = f"emulate ({backend.name}, {target.precision})" if opts.emulate else f"convert ({backend.name})"
        artefact, calibrated = stages.run(what, backend.convert, onnx_path, target, out), None
    state["convert"] = {"artefact": _relative(artefact, out), "calibration": calibrated, "emulated": opts.emulate,
                        "timings_s": {k: v for k, v in stages.seconds.items() if k not in before}}
    _write_state(out, state)


def check_converted(out: Path, state: dict, emulate: bool) -> None:
    """Inference runs what the convert stage made, in the mode that made it."""
    if "convert" not in state:
        raise InputError(f"{out}: no converted model", f"run --stages convert on {out} first")
    made_emulated = state["convert"].get("emulated", False)
    if made_emulated != emulate:
        raise InputError(f"{out}: its model was converted {'with' if made_emulated else 'without'} --mode emulate",
                         f"infer {'with' if made_emulated else 'without'} --mode emulate, or convert again")


@dataclass
class Inference:
    """What the infer stage ran and kept: per-image predictions on disk, a few detections and raw outputs."""

    times: pipeline.StageTimes | None
    engine: dict
    drawn: dict[str, Detections]
    raw: dict[str, dict[str, np.ndarray]]
    bad: dict[str, str]  # --skip-bad: image -> why it was skipped
    runtime: dict | None = None  # what the runner reported of itself (the precision in force)


def _infer_stage(opts: ChainOptions, backend: Backend, images: Images, state: dict, stages: Stages,
                 log: Callable[[str], None], progress) -> dict:
    """Inference, evaluation and result.json, from the artefacts the earlier stages recorded."""
    out = opts.out_dir
    ran = infer(opts, backend, artefact_path(out, state), images.items, stages, progress)
    if ran.bad:
        log(f"skipped {len(ran.bad)} unreadable images (listed in result.json), e.g. {next(iter(ran.bad.values()))}")
    items = [(k, p) for k, p in images.items if k not in ran.bad]
    if not items:
        raise InputError(f"every one of the {len(ran.bad)} images was skipped (e.g. {next(iter(ran.bad.values()))}): "
                         "nothing to evaluate", "see why above; --skip-bad goes on past bad images, not past all")
    evaluation = evaluate_run(out / PREDICTIONS, images.gt, items, backend.simulation is None, stages, log)
    result = result_of(opts, backend, state, Images(items, images.gt, {**images.skipped, **ran.bad}), ran, evaluation,
                       stages, log)
    saved_outputs.save(out / saved_outputs.FILE, ran.raw)
    if isinstance(evaluation, Evaluation):
        _save_curves(out / "pr_curves.npz", evaluation)
    result_file.write(out, result, keep=result_file.KEPT_BY_RUN)
    return result


def infer(opts: ChainOptions, backend: Backend, artefact: Path, items: list[tuple[str, Path]], stages: Stages,
          progress) -> Inference:
    """Every image through the backend's runner (or the Ray engine), predictions written as WIDER files."""
    pred_dir = opts.out_dir / PREDICTIONS
    fileio.remove(pred_dir)  # a re-run must not evaluate an earlier run's files
    to_draw, to_keep = {key for key, _ in items[:PICTURES]}, {key for key, _ in items[:RAW_OUTPUTS]}
    ran = Inference(None, {}, {}, {}, {})

    def on_result(key: str, det: Detections, outputs: dict) -> None:
        event, name = key.split("/", 1)
        write_wider(pred_dir, event, name, det)
        if key in to_draw:
            ran.drawn[key] = det
        if key in to_keep:
            ran.raw[key] = {n: a.copy() for n, a in outputs.items()}

    on_bad = ran.bad.__setitem__ if opts.skip_bad else None
    if opts.cluster is not None:
        advance = counter(progress, f"infer (ray, {opts.cluster.workers} workers)", len(items))
        times = stages.run("inference (ray)", opts.cluster.run, items, opts.target, artefact,
                           opts.target.batch_sizes[0], on_result, to_keep, advance, on_bad)
        ran.engine = times.summary(opts.cluster)
        return ran
    with backend.runner(artefact, opts.target) as runner:
        ran.times = stages.run("inference", pipeline.run, items, runner, opts.target.preprocess, on_result,
                               batch_size=opts.target.batch_sizes[0], threshold=opts.target.threshold,
                               on_progress=counter(progress, "infer", len(items)), on_bad=on_bad,
                               tta=opts.target.passes)
        ran.runtime = runner.reported() or None
    ran.engine = {"engine": "local", "workers": 1}
    return ran


def evaluate_run(pred_dir: Path, gt: GroundTruth | None, items: list[tuple[str, Path]], scored: bool,
                 stages: Stages, log: Callable[[str], None]) -> Evaluation | str | None:
    """The WIDER FACE AP of the predictions; a string saying why there is none where images have no ground
    truth; None without ground truth, or where outputs are not the model's own (`scored` False: simulated)."""
    if gt is None or not scored:
        return None
    if not any(k in gt.images for k, _ in items):
        log(f"no AP: none of the {len(items)} images has ground truth in {gt.source}; "
            "their predictions are written (predictions/)")
        return f"none of the images has ground truth in {gt.source} (AP needs it)"
    evaluation = stages.run("evaluate", lambda: evaluate(read_predictions(pred_dir), gt))
    if evaluation.restricted:
        log(f"ground truth restricted to the {evaluation.images} processed images (of {evaluation.gt_images} in {gt.source})")
    if evaluation.unmatched_predictions:
        log(f"{len(evaluation.unmatched_predictions)} images have no ground truth and count in no AP "
            f"(listed in result.json), e.g. {evaluation.unmatched_predictions[0]}")
    for reason in evaluation.reasons().values():
        log(f"no AP: {reason}")
    return evaluation


def result_of(opts: ChainOptions, backend: Backend, state: dict, images: Images, ran: Inference,
              evaluation: Evaluation | str | None, stages: Stages, log: Callable[[str], None]) -> dict:
    """result.json's keys for this run: what ran, on what, its AP, speed, artefacts and where it ran."""
    target, out, items = opts.target, opts.out_dir, images.items
    exported, converted_state = state["export"], state["convert"]
    artefact = artefact_path(out, state)
    emulated = isinstance(backend, EmulatedBackend)
    tool_figures = backend.measure(target, out, items)  # the vendor tool's own throughput, where it has one
    pictures = [_relative(save(out / "pictures" / f"{key.replace('/', '__')}.jpg",
                               draw(read_rgb(path), ran.drawn[key], max(target.threshold, DRAW_THRESHOLD))), out)
                for key, path in items if key in ran.drawn]
    scored = evaluation if isinstance(evaluation, Evaluation) else None
    deployed = backend.deployed_model(out, target)
    result = {
        "target": target.name, "backend": backend.name, "precision": target.precision,
        "preprocess": target.preprocess.as_dict(), "batch_size": target.batch_sizes[0], "images": len(items),
        "part": f"{opts.part[0]}/{opts.part[1]}" if opts.part else None,
        "skipped_images": [{"image": k, "reason": r} for k, r in images.skipped.items()],
        "dataset": str(opts.data) if opts.data else "sample image (no dataset)",
        "ap": scored.aps() if scored else None,
        "evaluation": scored.summary() if scored else {"ap_missing": evaluation} if evaluation else None,
        "parity": exported["parity"], "calibration": converted_state["calibration"],
        "timings_s": {**exported["timings_s"], **converted_state["timings_s"], **stages.seconds},
        # an emulation's speed is the CPU's, not the device's
        "throughput": None if emulated else ran.engine if opts.cluster else ran.times.summary(),
        "engine": ran.engine,
        "runtime": ran.runtime,
        "tta": ran.times.tta if ran.times else None,
        "tool_throughput": {bs: f.as_dict() for bs, f in tool_figures.items()} if tool_figures else None,
        "artefacts": {  # relative to the run folder, which may be mounted elsewhere (a container)
            "weights": exported["weights"], "pth": exported["pth"], "onnx": exported["onnx"],
            "converted": converted_state["artefact"], "converted_bytes": artefact.stat().st_size,
            "predictions": PREDICTIONS, "pictures": pictures,
        },
        "deployed_model": {"file": _relative(deployed, out), "sha256": weights.sha256(deployed)}
        if deployed is not None and deployed.is_file() else None,
        "detections": None if images.gt else {k: d.as_json() for k, d in ran.drawn.items()},
        "versions": {**machine.versions(), "backend": backend.version()},
        "machine": machine.describe(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if backend.simulation is not None:  # reused outputs: speed only, never an AP
        result["simulation"] = backend.simulation.describe(target)
    if emulated:
        result["emulated"] = True
        result["emulation"] = {**EmulatedBackend.record(artefact), "cpu_wall_s": round(ran.times.wall, 2)}
        if scored is not None:
            result["reference"] = _fp32_reference(out / exported["onnx"], items, target, images.gt, log)
    return result


def _fp32_reference(onnx_path: Path, items: list[tuple[str, Path]], target: Target, gt: GroundTruth,
                    log: Callable[[str], None]) -> dict:
    """CPU FP32 on the same images at the same input (and the same TTA passes): what an emulated run's AP deltas
    are against."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    pre = target.preprocess
    with OnnxRuntimeRunner(onnx_path) as runner:
        ap, _ = quantization.evaluate_model(runner, items, pre, target.threshold, gt, tta=target.passes)
    log(f"CPU FP32 on the same {len(items)} images at {pre.describe()}: AP {ap_words(ap)}")
    return {"ap": ap, "what": "CPU FP32 (onnxruntime), the same images at the same input"
            + (" and TTA passes" if target.tta else ""), "preprocess": pre.as_dict()}


def check_stages(stages: tuple[str, ...]) -> tuple[str, ...]:
    """The chosen stages in chain order; unknown names are refused."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise InputError(f"stage {unknown[0] if unknown else '(none)'!r}: choose from {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in stages)


def own_state(out: Path, target: Target, first: str) -> dict:
    """The stages an earlier command recorded in `out`, when they are this target's (a folder of another
    target's run is refused: its models are not this target's)."""
    state = _read_state(out, first)
    made_for = state.get("target", target.name)
    if made_for != target.name:
        raise InputError(f"{out}: a run folder of target {made_for} ({STATE_FILE}), not of {target.name}",
                         f"pass --out the run folder of {target.name}, or a new one")
    return state


def converted(out: Path, target: Target) -> Path | None:
    """The artefact an earlier convert stage made in `out` for `target`, when it is still there."""
    path = out / STATE_FILE
    if not path.is_file():
        return None
    state = own_state(out, target, "convert")
    artefact = artefact_path(out, state) if state.get("convert") else None
    return artefact if artefact and artefact.is_file() else None


def artefact_path(out: Path, state: dict) -> Path:
    """The converted model stages.json names, which must lie inside the run folder."""
    return reading.inside(out, state["convert"]["artefact"], out / STATE_FILE)


def _read_state(out: Path, first: str) -> dict:
    path = out / STATE_FILE
    if not os.path.lexists(path):
        raise InputError(f"{out}: no {STATE_FILE}, so no earlier stage ran here",
                         f"run the stages before {first!r} first (run --stages export)")
    state = reading.read_json(path, STATE_SHAPE)
    for key in ("pth", "onnx"):
        if "export" in state:
            reading.inside(out, state["export"][key], path)
    return state


def _write_state(out: Path, state: dict) -> None:
    fileio.write_json(out / STATE_FILE, state)


def _relative(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def _save_curves(path: Path, evaluation: Evaluation) -> None:
    arrays = {}
    for s, r in evaluation.settings.items():
        arrays[f"{s}_precision"], arrays[f"{s}_recall"] = r.precision, r.recall
    fileio.write_with(path, lambda tmp: np.savez(tmp, **arrays))

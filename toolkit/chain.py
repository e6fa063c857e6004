"""The whole chain for one target: weights -> .pth -> ONNX -> convert -> infer -> evaluate -> result.json."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit import backends, calibration, fileio, machine, pipeline, quantization, runfolder
from toolkit.backends.emulation import emulation_runner
from toolkit.cluster import RayEngine
from toolkit.data import wider
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw, save
from toolkit.errors import InputError
from toolkit.evaluate.wider_ap import Evaluation, evaluate, read_predictions
from toolkit.model import official, torch_parts, weights
from toolkit.model.signature import ExportShape
from toolkit.paths import runs_dir
from toolkit.postprocess import Detections, write_wider
from toolkit.report import outputs as saved_outputs
from toolkit.targets import Target

PARITY_IMAGES = 2
PICTURES = 4
RAW_OUTPUTS = 8  # images whose raw outputs are kept, to compare runs (compare-outputs)
DRAW_THRESHOLD = 0.5  # pictures show confident detections only
STAGES = ("export", "convert", "infer")  # weights -> .pth -> ONNX | artefact (INT8: calibrated) | inference -> AP
STATE_FILE = "stages.json"
RESULT = "result.json"
OTHER_SECTIONS = ("bench",)  # result.json sections that `bench` writes and `run` keeps


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
    """A picture any install has: matplotlib ships Grace Hopper's portrait (public domain)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [("sample/grace_hopper", path)]


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
                  dangling: bool = False) -> list[tuple[str, Path]]:
    check_limit(limit)
    items = wider.list_val_images(root, dangling)
    if part:
        items = items[part[0] - 1::part[1]]
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
        self.log(f"[green]✓[/] {name} ({self.seconds[name]:.1f} s)")
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


def run_chain(opts: ChainOptions, log: Callable[[str], None], progress=None) -> dict:
    """Run the chosen stages, write artefacts (and, for `infer`, result.json) into `opts.out_dir`.

    Each stage records what it made in stages.json, so a later stage can run elsewhere: the host
    exports (it has PyTorch), the target's container converts and infers on the same run folder.
    """
    target = opts.target
    pre, batch_size = target.preprocess, target.batch_sizes[0]
    pipeline.check_batch_size(batch_size, pre.sizes())  # before anything in the run folder changes
    chosen = check_stages(opts.stages)
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    needs_device = bool({"convert", "infer"} & set(chosen)) and not opts.emulate  # emulation needs only this CPU
    backend = backends.require(target.backend, target.name) if needs_device else backends.get(target.backend)
    stages = Stages(log)
    state = {} if chosen[0] == "export" else own_state(out, target, chosen[0])

    skipped: dict[str, str] = {}  # image -> why it was not run (links to a missing file; --skip-bad: unreadable)
    if opts.data is not None:
        items = dataset_items(opts.data, opts.limit, opts.part, dangling=True)
        skipped = {k: why for k, p in items if (why := wider.missing_target(p))}
        items = [(k, p) for k, p in items if k not in skipped]
        for why in skipped.values():
            log(f"[yellow]skipped[/] {why}")
        gt = stages.run("ground truth", wider.load_ground_truth, opts.data)
    else:
        items, gt = sample_images(), None
        log("[yellow]no WIDER FACE dataset[/]: detecting on the sample image instead (pass DATA=<WIDER root>)")
    if not pre.sizes() and batch_size > 1:  # native sizes: the first readable image's stands for the rest
        first = _parity_batches(items, pre, skip_bad=True)[:1]
        pipeline.check_batch_size(batch_size, [(b.shape[3], b.shape[2]) for b in first])
    if target.precision == "int8":
        if gt is None:
            raise InputError(f"target {target.name}: INT8 calibration needs the WIDER FACE images",
                             "pass --data <WIDER root>")
        calibration_keys = calibration.recipe_for(target).keys()
        items = [(k, p) for k, p in items if k not in calibration_keys]
        log(f"{len(calibration_keys)} calibration images left out of the evaluation")

    if "export" in chosen:
        model = export_model(target, out, opts.weights, stages, _parity_batches(items, pre, opts.skip_bad))
        state["target"] = target.name
        state["export"] = {"weights": str(model.weights), "pth": model.pth.name, "onnx": model.onnx.name,
                           "parity": model.parity, "timings_s": dict(stages.seconds)}
        _write_state(out, state)
    if "export" not in state:
        raise InputError(f"{out}: no exported model recorded in {STATE_FILE}", f"run --stages export on {out} first")
    onnx_path = out / state["export"]["onnx"]

    if "convert" in chosen:
        before = dict(stages.seconds)
        if opts.emulate:
            state["convert"] = _emulate(opts, backend, onnx_path, stages, log)
        elif target.precision == "int8":
            artefact, calibrated = stages.run(f"quantise ({backend.name}, {target.precision})", quantization.quantise,
                                              target, backend, onnx_path, opts.data, gt, out, items, log, progress)
        else:
            artefact = stages.run(f"convert ({backend.name})", backend.convert, onnx_path, target, out)
            calibrated = None
        if not opts.emulate:
            state["convert"] = {"artefact": _relative(artefact, out), "calibration": calibrated}
        state["convert"]["timings_s"] = {k: v for k, v in stages.seconds.items() if k not in before}
        _write_state(out, state)
    if "infer" not in chosen:
        return state
    if "convert" not in state:
        raise InputError(f"{out}: no converted model", f"run --stages convert on {out} first")
    return _infer(opts, backend, pre, batch_size, items, gt, state, stages, log, progress, skipped)


def _emulate(opts: ChainOptions, backend, onnx_path: Path, stages: Stages, log: Callable[[str], None]) -> dict:
    """The convert stage of --mode emulate: the backend's deployed numerics as ONNX model(s) for the CPU
    (INT8: calibrated on the target's own recipe at its deployed shape)."""
    target, out = opts.target, opts.out_dir
    calib = None
    if target.precision == "int8":
        calib, _ = calibration.build(calibration.recipe_for(target), opts.data, runs_dir() / "calibration")
    models, emulation = stages.run(f"emulate ({backend.name}, {target.precision})", backend.emulate,
                                   onnx_path, target, calib, out, log)
    calibrated = calib and {"set_sha256": calib.sha256, "images": len(calib.manifest["images"]),
                            "recipe": calib.manifest["recipe"], "excluded_from_evaluation": True}
    return {"artefact": _relative(models[0], out), "emulated_models": [_relative(m, out) for m in models],
            "emulation": emulation, "calibration": calibrated}


def _fp32_reference(onnx_path: Path, items: list[tuple[str, Path]], pre: Preprocess, threshold: float, gt,
                    log: Callable[[str], None]) -> dict:
    """CPU FP32 on the same images at the same input: what an emulated run's AP deltas are against."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(onnx_path) as runner:
        ap, _ = quantization.evaluate_model(runner, items, pre, threshold, gt)
    log(f"CPU FP32 on the same {len(items)} images at {pre.describe()}: AP {ap}")
    return {"ap": ap, "what": "CPU FP32 (onnxruntime), the same images at the same input", "preprocess": pre.as_dict()}


def _infer(opts: ChainOptions, backend, pre: Preprocess, batch_size: int, items: list[tuple[str, Path]],
           gt, state: dict, stages: Stages, log: Callable[[str], None], progress, skipped: dict[str, str]) -> dict:
    """Inference, evaluation and result.json, from the artefacts the earlier stages recorded."""
    target, out = opts.target, opts.out_dir
    artefact = out / state["convert"]["artefact"]
    pred_dir = out / "predictions"
    shutil.rmtree(pred_dir, ignore_errors=True)  # a re-run must not evaluate an earlier run's files
    to_draw = {key for key, _ in items[:PICTURES]}
    to_keep = {key for key, _ in items[:RAW_OUTPUTS]}
    drawn: dict[str, Detections] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    bad: dict[str, str] = {}  # --skip-bad: image -> why it was skipped

    def on_result(key: str, det: Detections, outputs: dict) -> None:
        event, name = key.split("/", 1)
        write_wider(pred_dir, event, name, det)
        if key in to_draw:
            drawn[key] = det
        if key in to_keep:
            raw[key] = {n: a.copy() for n, a in outputs.items()}

    converted_state = state["convert"]
    emulated = "emulated_models" in converted_state
    task = progress.add_task("infer" if opts.cluster is None else f"infer (ray, {opts.cluster.workers} workers)",
                             total=len(items)) if progress else None
    advance = (lambda n: progress.advance(task, n)) if progress else None
    if opts.cluster is not None:
        if emulated:
            raise InputError("--engine ray runs a target's converted model; an emulated run runs in this process",
                             "leave out --engine, or run --mode host")
        times = stages.run("inference (ray)", opts.cluster.run, items, target, artefact, batch_size, on_result,
                           to_keep, advance, bad.__setitem__ if opts.skip_bad else None)
        engine = times.summary(opts.cluster)
    else:
        runner = (emulation_runner([out / m for m in converted_state["emulated_models"]], pre.sizes(),
                                    backend.emulated_input(out, target)) if emulated else backend.runner(artefact, target))
        with runner:
            times = stages.run("inference", pipeline.run, items, runner, pre, on_result, batch_size=batch_size,
                               threshold=target.threshold, on_progress=advance,
                               on_bad=bad.__setitem__ if opts.skip_bad else None)
        engine = {"engine": "local", "workers": 1}
    if bad:
        log(f"[yellow]skipped {len(bad)} unreadable images[/] (listed in result.json), e.g. {next(iter(bad.values()))}")
    items = [(k, p) for k, p in items if k not in bad]
    # the vendor tool's own throughput, where it has one; an emulated run has no device to measure
    tool_figures = None if emulated else backend.measure(target, out, items)
    min_score = max(target.threshold, DRAW_THRESHOLD)
    pictures = [_relative(save(out / "pictures" / f"{key.replace('/', '__')}.jpg",
                               draw(read_rgb(path), drawn[key], min_score)), out)
                for key, path in items if key in drawn]

    evaluation: Evaluation | None = None
    simulation = None if emulated else backend.simulation(target)  # reused outputs: speed only, never an AP
    no_truth = gt is not None and simulation is None and not any(k in gt.images for k, _ in items)
    if no_truth:
        log(f"[yellow]no AP[/]: none of the {len(items)} images has ground truth in {gt.source}; "
            "their predictions are written (predictions/)")
    if gt is not None and simulation is None and not no_truth:
        evaluation = stages.run("evaluate", lambda: evaluate(read_predictions(pred_dir), gt))
        if evaluation.restricted:
            log(f"ground truth restricted to the {evaluation.images} processed images "
                f"(of {evaluation.gt_images} in {gt.source})")
        if evaluation.unmatched_predictions:
            log(f"[yellow]{len(evaluation.unmatched_predictions)} images have no ground truth[/] and count in no AP "
                f"(listed in result.json), e.g. {evaluation.unmatched_predictions[0]}")
        for reason in evaluation.reasons().values():
            log(f"[yellow]no AP[/]: {reason}")

    exported, converted = state["export"], state["convert"]
    deployed = backend.deployed_model(out, target)
    result = {
        "target": target.name,
        "backend": backend.name,
        "precision": target.precision,
        "preprocess": pre.as_dict(),
        "batch_size": batch_size,
        "images": len(items),
        "part": f"{opts.part[0]}/{opts.part[1]}" if opts.part else None,
        "skipped_images": [{"image": k, "reason": r} for k, r in {**skipped, **bad}.items()],
        "dataset": str(opts.data) if opts.data else "sample image (no dataset)",
        "ap": evaluation.aps() if evaluation else None,
        "evaluation": evaluation.summary() if evaluation else {
            "ap_missing": f"none of the images has ground truth in {gt.source} (AP needs it)"} if no_truth else None,
        "parity": exported["parity"],
        "calibration": converted["calibration"],
        "timings_s": {**exported["timings_s"], **converted["timings_s"], **stages.seconds},
        "throughput": None if emulated else (engine if opts.cluster else times.summary()),  # an emulation's: the CPU's
        "engine": engine,
        "tool_throughput": {bs: f.as_dict() for bs, f in tool_figures.items()} if tool_figures else None,
        "artefacts": {  # relative to the run folder, which may be mounted elsewhere (a container)
            "weights": exported["weights"], "pth": exported["pth"], "onnx": exported["onnx"],
            "converted": converted["artefact"], "converted_bytes": artefact.stat().st_size,
            "predictions": _relative(pred_dir, out), "pictures": pictures,
        },
        "deployed_model": {"file": _relative(deployed, out), "sha256": weights.sha256(deployed)}
        if deployed is not None and deployed.is_file() else None,
        "detections": None if gt else {k: d.as_json() for k, d in drawn.items()},
        "versions": {**machine.versions(), "backend": backend.version()},
        "machine": machine.describe(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if simulation:
        result["simulation"] = simulation
    if emulated:
        result["emulated"] = True
        result["emulation"] = {**converted["emulation"], "cpu_wall_s": round(times.wall, 2)}
        if evaluation is not None:
            result["reference"] = _fp32_reference(out / exported["onnx"], items, pre, target.threshold, gt, log)
    saved_outputs.save(out / saved_outputs.FILE, raw)
    if evaluation is not None:
        _save_curves(out / "pr_curves.npz", evaluation)
    fileio.write_json(out / RESULT, {**_sections_of_others(out / RESULT), **result})
    return result


def _sections_of_others(path: Path) -> dict:
    """The sections of an earlier result.json that other commands wrote (`bench`): a re-run keeps them."""
    import json

    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except ValueError:
        return {}
    return {k: v for k, v in earlier.items() if k in OTHER_SECTIONS} if isinstance(earlier, dict) else {}


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
    record = own_state(out, target, "convert").get("convert")
    artefact = out / record["artefact"] if record else None
    return artefact if artefact and artefact.is_file() else None


def _read_state(out: Path, first: str) -> dict:
    import json

    path = out / STATE_FILE
    if not path.is_file():
        raise InputError(f"{out}: no {STATE_FILE}, so no earlier stage ran here",
                         f"run the stages before {first!r} first (run --stages export)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg})") from None


def _write_state(out: Path, state: dict) -> None:
    fileio.write_json(out / STATE_FILE, state)


def _relative(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def _save_curves(path: Path, evaluation: Evaluation) -> None:
    arrays = {}
    for s, r in evaluation.settings.items():
        arrays[f"{s}_precision"], arrays[f"{s}_recall"] = r.precision, r.recall
    fileio.write_with(path, lambda tmp: np.savez(tmp, **arrays))

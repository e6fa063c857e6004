"""The whole chain for one target: weights -> .pth -> ONNX -> convert -> infer -> evaluate -> result.json."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit import backends, fileio, machine, pipeline, quantization
from toolkit.data import wider
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw, save
from toolkit.errors import InputError
from toolkit.evaluate.wider_ap import Evaluation, evaluate, read_predictions
from toolkit.model import export as exporter
from toolkit.model import official, port, weights
from toolkit.postprocess import Detections, write_wider
from toolkit.report import outputs as saved_outputs
from toolkit.targets import Target

PARITY_IMAGES = 2
PICTURES = 4
RAW_OUTPUTS = 8  # images whose raw outputs are kept, to compare runs (compare-outputs)
DRAW_THRESHOLD = 0.5  # pictures show confident detections only


@dataclass
class ChainOptions:
    target: Target
    out_dir: Path
    data: Path | None  # WIDER root; None -> the sample image
    weights: Path | None = None
    limit: int | None = None
    preprocess: Preprocess | None = None  # overrides the target's
    batch_size: int | None = None


def sample_images() -> list[tuple[str, Path]]:
    """A picture any install has: matplotlib ships Grace Hopper's portrait (public domain)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [("sample/grace_hopper", path)]


def dataset_items(root: Path, limit: int | None) -> list[tuple[str, Path]]:
    items = wider.list_val_images(root)
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


@dataclass
class PreparedModel(ExportedModel):
    artefact: Path


def export_model(target: Target, out: Path, weights_path: Path | None, stages: Stages,
                 parity_batches: list[np.ndarray]) -> ExportedModel:
    """Weights -> .pth -> ONNX (+ parity on real images), into `out`."""
    official_onnx = stages.run("weights", lambda: weights.verify(weights_path) if weights_path else weights.fetch())
    pth = stages.run("port to PyTorch (.pth)", port.port, official_onnx, out / "centerface.pth")
    net = port.load_module(pth)
    shape = exporter.ExportShape.parse(target.export_shape)
    onnx_path = stages.run("export ONNX + onnxsim", exporter.export, net, out / "centerface.onnx", shape)
    parity_result = stages.run("parity", parity, official_onnx, net, onnx_path, parity_batches) if parity_batches else None
    return ExportedModel(official_onnx, pth, onnx_path, parity_result)


def prepare_model(target: Target, out: Path, weights_path: Path | None, stages: Stages,
                  parity_batches: list[np.ndarray], convert: Callable[[Path], Path] | None = None) -> PreparedModel:
    """`export_model`, then the target's artefact (made by `convert` when given, else by the backend)."""
    backend = backends.get(target.backend)
    model = export_model(target, out, weights_path, stages, parity_batches)
    if convert is not None:
        artefact = stages.run(f"quantise ({backend.name}, {target.precision})", convert, model.onnx)
    else:
        artefact = stages.run(f"convert ({backend.name})", backend.convert, model.onnx, target, out)
    return PreparedModel(model.weights, model.pth, model.onnx, model.parity, artefact)


def run_chain(opts: ChainOptions, log: Callable[[str], None], progress=None) -> dict:
    """Run every stage, write artefacts and result.json into `opts.out_dir`, return the result."""
    target = opts.target
    pre = opts.preprocess or target.preprocess
    batch_size = opts.batch_size if opts.batch_size is not None else target.batch_sizes[0]
    pipeline.check_batch_size(batch_size)  # before anything in the run folder changes
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    backend = backends.require(target.backend, target.name)
    stages = Stages(log)

    if opts.data is not None:
        items = dataset_items(opts.data, opts.limit)
        gt = stages.run("ground truth", wider.load_ground_truth, opts.data)
    else:
        items, gt = sample_images(), None
        log("[yellow]no WIDER FACE dataset[/]: detecting on the sample image instead (pass DATA=<WIDER root>)")

    convert, calibration = None, None
    if target.precision == "int8":
        if gt is None:
            raise InputError(f"target {target.name}: INT8 calibration needs the WIDER FACE images",
                             "pass --data <WIDER root>")
        calibration_keys = quantization.recipe_for(target).keys()
        items = [(k, p) for k, p in items if k not in calibration_keys]
        log(f"{len(calibration_keys)} calibration images left out of the evaluation")

        def convert(onnx_path: Path) -> Path:
            nonlocal calibration
            path, calibration = quantization.best_model(target, onnx_path, opts.data, gt, out, items, log, progress)
            return path

    model = prepare_model(target, out, opts.weights, stages, [pre(read_rgb(p))[0][None] for _, p in items[:PARITY_IMAGES]],
                          convert)
    artefact = model.artefact

    pred_dir = out / "predictions"
    shutil.rmtree(pred_dir, ignore_errors=True)  # a re-run must not evaluate an earlier run's files
    to_draw = {key for key, _ in items[:PICTURES]}
    to_keep = {key for key, _ in items[:RAW_OUTPUTS]}
    drawn: dict[str, Detections] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}

    def on_result(key: str, det: Detections, outputs: dict) -> None:
        event, name = key.split("/", 1)
        write_wider(pred_dir, event, name, det)
        if key in to_draw:
            drawn[key] = det
        if key in to_keep:
            raw[key] = {n: a.copy() for n, a in outputs.items()}

    with backend.runner(artefact, target) as runner:
        task = progress.add_task("infer", total=len(items)) if progress else None
        times = stages.run(
            "inference", pipeline.run, items, runner, pre, on_result, batch_size=batch_size,
            threshold=target.threshold,
            on_progress=(lambda n: progress.advance(task, n)) if progress else None,
        )
    min_score = max(target.threshold, DRAW_THRESHOLD)
    pictures = [str(save(out / "pictures" / f"{key.replace('/', '__')}.jpg", draw(read_rgb(path), drawn[key], min_score)))
                for key, path in items[:PICTURES]]

    evaluation: Evaluation | None = None
    if gt is not None:
        evaluation = stages.run("evaluate", lambda: evaluate(read_predictions(pred_dir), gt))
        if evaluation.restricted:
            log(f"ground truth restricted to the {evaluation.images} processed images "
                f"(of {evaluation.gt_images} in {gt.source})")

    result = {
        "target": target.name,
        "backend": backend.name,
        "precision": target.precision,
        "preprocess": pre.as_dict(),
        "batch_size": batch_size,
        "images": len(items),
        "dataset": str(opts.data) if opts.data else "sample image (no dataset)",
        "ap": evaluation.aps() if evaluation else None,
        "evaluation": evaluation.summary() if evaluation else None,
        "parity": model.parity,
        "calibration": None if calibration is None else {
            "best": calibration["best"], "set_sha256": calibration["calibration_sha256"],
            "images": len(calibration["calibration_images"]), "excluded_from_evaluation": True,
            "report": str(out / f"{quantization.REPORT}.json")},
        "timings_s": stages.seconds,
        "throughput": times.summary(),
        "artefacts": {
            "weights": str(model.weights), "pth": str(model.pth), "onnx": str(model.onnx), "converted": str(artefact),
            "converted_bytes": Path(artefact).stat().st_size, "predictions": str(pred_dir), "pictures": pictures,
        },
        "detections": None if gt else {k: d.as_json() for k, d in drawn.items()},
        "versions": {**machine.versions(), "backend": backend.version()},
        "machine": machine.describe(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    saved_outputs.save(out / saved_outputs.FILE, raw)
    if evaluation is not None:
        _save_curves(out / "pr_curves.npz", evaluation)
    fileio.write_json(out / "result.json", result)
    return result


def _save_curves(path: Path, evaluation: Evaluation) -> None:
    arrays = {}
    for s, r in evaluation.settings.items():
        arrays[f"{s}_precision"], arrays[f"{s}_recall"] = r.precision, r.recall
    fileio.write_with(path, lambda tmp: np.savez(tmp, **arrays))

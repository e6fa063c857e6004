"""INT8 targets: build the calibration set, quantise with every configured method, measure each
(AP on the images calibration did not use, pure-inference speed, size) against FP32, keep the best."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import backends, bench, calibration, fileio, pipeline
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.wider import SETTINGS, GroundTruth, list_val_images
from toolkit.errors import InputError
from toolkit.evaluate.wider_ap import evaluate
from toolkit.model.weights import sha256
from toolkit.paths import runs_dir
from toolkit.report.table import worst_drop
from toolkit.targets import Target

REPORT = "calibration_report"
BEST = "centerface.int8.onnx"
SPEED_ITERS = 16


@dataclass(frozen=True)
class QuantConfig:
    method: str
    keep_float: tuple[str, ...] = ()  # node-name patterns left in float

    @property
    def label(self) -> str:
        return self.method + (f", float: {' '.join(self.keep_float)}" if self.keep_float else "")

    @property
    def slug(self) -> str:
        """For file names: 'entropy', 'entropy-float-head'."""
        return self.method + "".join("-float-" + re.sub(r"[^A-Za-z0-9]+", "", p) for p in self.keep_float)


def recipe_for(target: Target, count: int | None = None) -> calibration.Recipe:
    spec = target.extra.get("calibration")
    if not spec:
        raise InputError(f"target {target.name}: no [calibration] table in its target file")
    return calibration.load_recipe(spec["recipe"], count=count)


def configs_for(target: Target, methods: list[str] | None = None) -> list[QuantConfig]:
    spec = target.extra["calibration"]
    chosen = methods or spec.get("methods", ["minmax"])
    variants = spec.get("keep_float", [[]])
    return [QuantConfig(m, tuple(v)) for m in chosen for v in variants]


def evaluate_model(runner, items: list[tuple[str, Path]], pre: Preprocess, threshold: float,
                   gt: GroundTruth, on_progress: Callable[[int], None] | None = None) -> tuple[dict, float]:
    """AP (in memory, no files) and end-to-end images/s of one model over `items`."""
    preds: dict[str, np.ndarray] = {}
    times = pipeline.run(items, runner, pre, lambda key, det, _o: preds.__setitem__(key, det.xywhs()),
                         threshold=threshold, on_progress=on_progress)
    return evaluate(preds, gt).aps(), round(times.images / times.wall, 2)


def _row(name: str, ap: dict, e2e: float, speed: dict, size: int, ref: dict | None, ref_speed: float | None) -> dict:
    return {
        "config": name, **ap,
        **{f"delta_{s}": round((ap[s] - ref[s]) * 100, 2) if ref else 0.0 for s in SETTINGS},
        "e2e_images_per_s": e2e, "infer_images_per_s": speed["throughput"],
        "speedup": round(speed["throughput"] / ref_speed, 3) if ref_speed else 1.0,
        "size_mb": round(size / 2**20, 2),
    }


def evaluation_items(recipe: calibration.Recipe, data_root: Path, limit: int | None = None) -> list[tuple[str, Path]]:
    """The dataset's images minus the calibration images (the first `limit` of them)."""
    skip = recipe.keys()
    return [(k, p) for k, p in list_val_images(data_root) if k not in skip][:limit]


def calibrate(target: Target, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
              items: list[tuple[str, Path]], log: Callable[[str], None], progress=None,
              methods: list[str] | None = None, count: int | None = None) -> dict:
    """Run every configuration over `items` (images the calibration does not use), write
    calibration_report.{json,md} and copy the best model to `out`."""
    backend = backends.require(target.backend, target.name)
    configs = configs_for(target, methods)
    unknown = sorted({c.method for c in configs} - set(backend.calibration_methods))
    if unknown:
        raise InputError(f"calibration method {unknown[0]!r}: {backend.name} offers "
                         f"{', '.join(backend.calibration_methods) or 'none'}")
    recipe = recipe_for(target, count)
    calib, reused = calibration.build(recipe, data_root, runs_dir() / "calibration")
    log(f"calibration set {calib.folder.name}: {len(calib.manifest['images'])} images, sha256 {calib.sha256[:16]}"
        + (" (reused)" if reused else ""))
    overlap = recipe.keys() & {k for k, _ in items}
    if overlap:
        raise InputError(f"{sorted(overlap)[0]}: a calibration image among the evaluation images")
    pre = target.preprocess
    speed_batch = pre(read_rgb(items[0][1]))[0][None]
    work = out / "calibration"

    def measure(name: str, model: Path, ref: dict | None, ref_speed: float | None) -> dict:
        with backend.runner(model, target) as runner:
            task = progress.add_task(name, total=len(items)) if progress else None
            ap, e2e = evaluate_model(runner, items, pre, target.threshold, gt,
                                     (lambda n: progress.advance(task, n)) if progress else None)
            speed = bench.pure_inference(runner, speed_batch, 2, SPEED_ITERS)
        return _row(name, ap, e2e, speed, model.stat().st_size, ref, ref_speed)

    fp32 = measure("fp32", fp32_onnx, None, None)
    rows = [fp32]
    for cfg in configs:
        model = backend.calibrate(fp32_onnx, calib, target, work / f"centerface.int8.{cfg.slug}.onnx",
                                  cfg.method, list(cfg.keep_float))
        rows.append({**measure(cfg.label, model, fp32, fp32["infer_images_per_s"]),
                     "model": os.path.relpath(model, out)})  # relative: the run folder moves (staging)
        log(f"{cfg.label}: Δ easy/medium/hard {rows[-1]['delta_easy']} / {rows[-1]['delta_medium']} / "
            f"{rows[-1]['delta_hard']} points, {rows[-1]['speedup']}x")
    best = min(rows[1:], key=lambda r: (worst_drop(r), -r["infer_images_per_s"]))
    fileio.write_with(out / BEST, lambda tmp: shutil.copyfile(out / best["model"], tmp))
    report = {
        "target": target.name, "fp32_sha256": sha256(fp32_onnx), "recipe": calib.manifest["recipe"],
        "calibration_set": str(calib.folder), "calibration_sha256": calib.sha256, "calibration_images": calib.manifest["images"],
        "evaluated_images": len(items), "excluded_from_evaluation": len(recipe.keys()),
        "speed_input": list(speed_batch.shape), "rows": rows, "best": best["config"],
    }
    fileio.write_json(out / f"{REPORT}.json", report)
    fileio.write_text(out / f"{REPORT}.md", markdown(report))
    return report


def best_model(target: Target, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
               items: list[tuple[str, Path]], log: Callable[[str], None], progress=None) -> tuple[Path, dict]:
    """The best INT8 model: from an earlier calibration of this same FP32 model and recipe, or now."""
    report_path = out / f"{REPORT}.json"
    if report_path.is_file() and (out / BEST).is_file():
        import json

        report = json.loads(report_path.read_text())
        recipe = recipe_for(target)
        if report.get("fp32_sha256") == sha256(fp32_onnx) and report.get("recipe", {}).get("count") == recipe.count \
                and report["calibration_set"].endswith(recipe.key()):
            log(f"INT8 model from the earlier calibration ({report['best']}, set {report['calibration_sha256'][:16]})")
            return out / BEST, report
    report = calibrate(target, fp32_onnx, data_root, gt, out, items, log, progress)
    return out / BEST, report


def markdown(report: dict) -> str:
    cols = ("config", "easy", "medium", "hard", "delta_easy", "delta_medium", "delta_hard",
            "infer_images_per_s", "speedup", "e2e_images_per_s", "size_mb")
    lines = [f"# INT8 calibration: {report['target']}", "",
             f"Calibration set: {len(report['calibration_images'])} WIDER FACE images (sha256 "
             f"{report['calibration_sha256'][:16]}), left out of the evaluation, which covers the other "
             f"{report['evaluated_images']} images. Deltas are AP points against FP32 on those same images; "
             f"speed is pure inference on a {'x'.join(map(str, report['speed_input']))} input.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in report["rows"]:
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    lines += ["", f"Best: **{report['best']}**", ""]
    return "\n".join(lines)

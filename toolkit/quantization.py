"""INT8 for a target, by what its backend can do: the toolkit's sweep (every configured method tried on
this machine, each measured against FP32 on the images calibration did not use, the best kept), or the
vendor's own quantiser (whose ONNX twin, when it writes one, ONNX Runtime evaluates on any machine)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from toolkit import bench, calibration, fileio, pipeline, reading
from toolkit.backends.base import Backend
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.tta import TtaPlan
from toolkit.data.wider import GroundTruth, list_val_images
from toolkit.errors import InputError, Unavailable
from toolkit.evaluate.deltas import ap_deltas, ap_words, worst_drop
from toolkit.evaluate.wider_ap import evaluate
from toolkit.model.weights import sha256
from toolkit.paths import cache_dir
from toolkit.postprocess import written_rows
from toolkit.progress import counter
from toolkit.target import Target

REPORT = "calibration_report"
BEST = "centerface.int8.onnx"
SPEED_ITERS = 16


def evaluate_model(runner, items: list[tuple[str, Path]], pre: Preprocess, threshold: float,
                   gt: GroundTruth, on_progress: Callable[[int], None] | None = None,
                   tta: TtaPlan | None = None) -> tuple[dict, float]:
    """AP (in memory, of the rows a prediction file would hold: the AP a run of the model writes) and end-to-end
    images/s of one model over `items` (with `tta`'s passes)."""
    preds, rate = predictions(runner, items, pre, threshold, on_progress, tta)
    return evaluate(preds, gt).aps(), rate


def predictions(runner, items: list[tuple[str, Path]], pre: Preprocess, threshold: float,
                on_progress: Callable[[int], None] | None = None,
                tta: TtaPlan | None = None) -> tuple[dict[str, np.ndarray], float]:
    """The rows a prediction file would hold, per image key, and the end-to-end images/s."""
    preds: dict[str, np.ndarray] = {}
    times = pipeline.run(items, runner, pre, lambda key, det, _o: preds.__setitem__(key, written_rows(det)),
                         threshold=threshold, on_progress=on_progress, tta=tta)
    return preds, round(times.images / times.wall, 2)


def _row(name: str, ap: dict, e2e: float, speed: dict, size: int, ref: dict | None, ref_speed: float | None) -> dict:
    return {
        "config": name, **ap,
        **ap_deltas(ap, ref or ap),  # the FP32 row against itself: 0
        "e2e_images_per_s": e2e, "infer_images_per_s": speed["throughput"],
        "speedup": round(speed["throughput"] / ref_speed, 3) if ref_speed else 1.0,
        "size_mb": round(size / 2**20, 2),
    }


def evaluation_items(recipe: calibration.Recipe, data_root: Path, limit: int | None = None) -> list[tuple[str, Path]]:
    """The dataset's images minus the calibration images (the first `limit` of them)."""
    return recipe.left_out(list_val_images(data_root))[:limit]


def check_methods(backend: Backend, target: Target, methods: list[str] | None) -> None:
    """The methods asked for are ones the backend's sweep offers (a vendor quantiser takes none)."""
    if not backend.sweep_methods:
        if methods:
            raise InputError(f"--methods: target {target.name} calibrates with {backend.name}'s own quantiser "
                             f"({backend.own_quantiser}); leave --methods out")
        return
    unknown = sorted({c.method for c in calibration.configs_for(target, methods)} - set(backend.sweep_methods))
    if unknown:
        raise InputError(f"calibration method {unknown[0]!r}: {backend.name} offers {', '.join(backend.sweep_methods)}")


def sweep(target: Target, backend: Backend, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
          items: list[tuple[str, Path]], log: Callable[[str], None], progress=None,
          methods: list[str] | None = None, count: int | None = None) -> dict:
    """Run every configuration over `items` (images the calibration does not use), write
    calibration_report.{json,md} and copy the best model to `out`."""
    check_methods(backend, target, methods)
    configs = calibration.configs_for(target, methods)
    recipe = calibration.recipe_for(target, count)
    calib, reused = calibration.build(recipe, data_root, cache_dir() / "calibration")
    log(f"calibration set {calib.folder.name}: {len(calib.manifest['images'])} images, sha256 {calib.sha256[:16]}"
        + (" (reused)" if reused else ""))
    overlap = {k for k, _ in items} - {k for k, _ in recipe.left_out(items)}
    if overlap:
        raise InputError(f"{sorted(overlap)[0]}: a calibration image among the evaluation images")
    pre = target.preprocess
    speed_batch = pre(read_rgb(items[0][1]))[0][None]
    work = out / "calibration"

    def measure(name: str, model: Path, ref: dict | None, ref_speed: float | None) -> dict:
        # the FP32 row in FP32 (a runtime may compute an INT8 model's float parts in BF16)
        with backend.runner(model, replace(target, precision="fp32") if ref is None else target) as runner:
            ap, e2e = evaluate_model(runner, items, pre, target.threshold, gt, counter(progress, name, len(items)))
            speed = bench.pure_inference(runner, speed_batch, 2, SPEED_ITERS)
        return _row(name, ap, e2e, speed, model.stat().st_size, ref, ref_speed)

    fp32 = measure("fp32", fp32_onnx, None, None)
    rows = [fp32]
    for cfg in configs:
        model = backend.calibrate(fp32_onnx, calib, target, work / f"centerface.int8.{cfg.slug}.onnx",
                                  cfg.method, list(cfg.keep_float))
        rows.append({**measure(cfg.label, model, fp32, fp32["infer_images_per_s"]),
                     "keep_float": list(cfg.keep_float),
                     "model": os.path.relpath(model, out)})  # relative: the run folder moves (staging)
        log(f"{cfg.label}: AP against FP32 easy / medium / hard {rows[-1]['delta_easy']} / "
            f"{rows[-1]['delta_medium']} / {rows[-1]['delta_hard']} points; inference {rows[-1]['speedup']}x "
            "FP32's images/s")
    best = min(rows[1:], key=lambda r: (_unknown_last(worst_drop(r)), -r["infer_images_per_s"]))
    fileio.write_with(out / BEST, lambda tmp: shutil.copyfile(out / best["model"], tmp))
    report = {
        "target": target.name, "fp32_sha256": sha256(fp32_onnx), "recipe": calib.manifest["recipe"],
        "calibration_set": str(calib.folder), "calibration_sha256": calib.sha256, "calibration_images": calib.manifest["images"],
        "calibration_source": recipe.source(),
        "evaluated_images": len(items), "excluded_from_evaluation": len(recipe.keys()),
        "speed_input": list(speed_batch.shape), "rows": rows, "best": best["config"],
    }
    fileio.write_json(out / f"{REPORT}.json", report)
    fileio.write_text(out / f"{REPORT}.md", markdown(report))
    return report


def _unknown_last(drop: float | None) -> float:
    """A configuration whose AP drop is unknown (no faces of any setting among the images) ranks last."""
    return float("inf") if drop is None else drop


def best_model(target: Target, backend: Backend, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
               items: list[tuple[str, Path]], log: Callable[[str], None], progress=None) -> tuple[Path, dict]:
    """The best INT8 model of the sweep: from an earlier sweep of this same FP32 model and recipe, or now."""
    report_path = out / f"{REPORT}.json"
    if report_path.is_file() and (out / BEST).is_file():
        report = reading.read_json(report_path, {"best": str, "calibration_set": str, "calibration_sha256": str})
        recipe = calibration.recipe_for(target)
        if report.get("fp32_sha256") == sha256(fp32_onnx) and report.get("recipe", {}).get("count") == recipe.count \
                and report["calibration_set"].endswith(recipe.key()):
            log(f"INT8 model from the earlier calibration ({report['best']}, set {report['calibration_sha256'][:16]})")
            return out / BEST, report
    report = sweep(target, backend, fp32_onnx, data_root, gt, out, items, log, progress)
    return out / BEST, report


def quantise(target: Target, backend: Backend, onnx_path: Path, data_root: Path, gt: GroundTruth, out: Path,
             items: list[tuple[str, Path]], log: Callable[[str], None], progress=None,
             count: int | None = None) -> tuple[Path, dict]:
    """The target's INT8 artefact and a summary of how it was calibrated, by the backend's capability
    (`count`: calibration images instead of the recipe's, for the vendor's quantiser)."""
    if backend.sweep_methods:
        path, report = best_model(target, backend, onnx_path, data_root, gt, out, items, log, progress)
        return path, {"method": report["best"], "set_sha256": report["calibration_sha256"],
                      "images": len(report["calibration_images"]), "source": report["calibration_source"],
                      "excluded_from_evaluation": True, "report": f"{REPORT}.json"}
    if not backend.own_quantiser:
        raise Unavailable(f"target {target.name}: backend {backend.name} has no INT8 quantisation")
    recipe = calibration.recipe_for(target, count)
    calib, _ = calibration.build(recipe, data_root, cache_dir() / "calibration")
    artefact, summary = backend.quantise(onnx_path, target, calib, out, log)
    summary["source"] = recipe.source()
    if summary.get("onnx_twin"):  # the quantised numerics in ONNX Runtime: INT8 accuracy known on any machine
        from toolkit.backends.onnxruntime import OnnxRuntimeRunner

        with OnnxRuntimeRunner(out / summary["onnx_twin"]) as runner:
            summary["onnx_twin_ap"], _ = evaluate_model(runner, items, target.preprocess, target.threshold, gt)
        log(f"{backend.own_quantiser}'s ONNX twin in ONNX Runtime: AP {ap_words(summary['onnx_twin_ap'])}")
    return artefact, summary


def markdown(report: dict) -> str:
    cols = ("config", "easy", "medium", "hard", "delta_easy", "delta_medium", "delta_hard",
            "infer_images_per_s", "speedup", "e2e_images_per_s", "size_mb")
    lines = [f"# INT8 calibration: {report['target']}", "",
             f"Calibration set: {len(report['calibration_images'])} images from "
             f"{report.get('calibration_source', 'the WIDER FACE recipe list')} (sha256 "
             f"{report['calibration_sha256'][:16]}), left out of the evaluation, which covers the other "
             f"{report['evaluated_images']} images. Deltas are AP points against FP32 on those same images; "
             f"speed is pure inference on a {'x'.join(map(str, report['speed_input']))} input.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in report["rows"]:
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    lines += ["", f"Best: **{report['best']}**", ""]
    return "\n".join(lines)

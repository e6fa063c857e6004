"""`calibrate --search`: the float set of least cost that keeps an INT8 target's AP within its budget, for every
INT8 target: by the toolkit's own quantiser (ONNX Runtime, OpenVINO: FP32 / BF16 float parts), TensorRT's typed
Q/DQ file (FP16 float parts) or AMCT's skipped layers (FP16 on the chip); a device that is not here is searched
through its emulation, and every figure says so.

- Sensitivity: each convolution's own quantisation noise (ONNX Runtime's qdq_loss_debug on two calibration
  images, toolkit/sensitivity.py, on the backend's Q/DQ twin) per share of the cost: the most noise for the least
  cost first. Cost: FLOPs at the calibration input, or, where the target runs on this CPU, each convolution's
  measured time (toolkit/layer_time.py).
- Search: growing prefixes of that order (0, 1, 2, 4, 8, ... convolutions in float) until the AP is within the
  budget, then a bisection of the prefix length between the last that failed and the first that held: about
  2 log2(N) AP evaluations instead of N. A prefix is the natural unit: the order already weighs error against
  cost, and a bisection over it is exact where AP improves monotonically along it, which a pruning pass over
  single layers (one evaluation each of the chosen ones) would only refine at many times the cost.
- AP on a selection split (every other non-calibration image), never a calibration image. A float set holds when
  its AP loss is within the budget, half the tolerance (0.25 / 0.25 / 0.5 points), and within the tolerance at
  the worst end of its bootstrap 90 % interval over images: on 267 images an AP difference is known to about
  +-0.45 points, so a loss measured at the budget's edge carries over about as often as not (t4-int8,
  docs/results.md). Confirmed on the other split."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from toolkit import backends, calibration, fileio, layer_time, sensitivity
from toolkit.backends.base import Backend
from toolkit.backends.emulated import EmulatedBackend
from toolkit.backends.onnxruntime import OnnxRuntimeRunner
from toolkit.data.wider import SETTINGS, GroundTruth, list_val_images
from toolkit.errors import Unavailable
from toolkit.evaluate.bootstrap import LEVEL, delta_intervals
from toolkit.evaluate.deltas import ap_deltas
from toolkit.evaluate.wider_ap import evaluate
from toolkit.paths import cache_dir
from toolkit.progress import counter
from toolkit.quantization import predictions
from toolkit.report import plots
from toolkit.target import Target

TOLERANCE = {"easy": 0.5, "medium": 0.5, "hard": 1.0}  # AP points an INT8 target may lose against FP32
BUDGET = {s: points / 2 for s, points in TOLERANCE.items()}  # the search's: half, so that the choice carries over
RANKING_IMAGES = 2  # calibration images the sensitivity is measured on (each tensor of the network is ~1 GB)
SEARCH = "search"


def searching_backend(target: Target, log: Callable[[str], None]) -> tuple[Backend, bool]:
    """The backend that quantises and runs the candidates: the target's own where it can here, else its device's
    emulation; and whether it is emulated."""
    device = backends.get(target.backend)
    reason = device.unavailable_for_int8() or device.unavailable_for(target)
    if reason is None:
        return device, False
    if device.emulation is None:
        raise Unavailable(f"target {target.name}: {reason}")
    log(f"{target.name}: {reason}; searching its emulation (every figure is emulated)")
    return EmulatedBackend(device, log), True


@dataclass
class _Split:
    name: str
    images: list
    reference: dict | None = None  # the FP32 model's predictions


class _Candidates:
    """Quantises with a float set and predicts on a split; the FP32 reference of each split computed once."""

    def __init__(self, target: Target, backend: Backend, emulated: bool, fp32_onnx: Path,
                 calib: calibration.CalibrationSet, work: Path, progress) -> None:
        self.target, self.backend, self.emulated, self.fp32 = target, backend, emulated, fp32_onnx
        self.calib, self.work, self.progress = calib, work, progress
        self.model: Path | None = None

    def _predict(self, runner, split: _Split, name: str) -> dict:
        with runner:
            preds, _ = predictions(runner, split.images, self.target.preprocess, self.target.threshold,
                                   counter(self.progress, f"{name}, {split.name}", len(split.images), transient=True))
        return preds

    def reference(self, split: _Split) -> dict:
        """FP32 at the target's input: the backend's own FP32 where it runs here, else ONNX Runtime's."""
        if split.reference is None:
            runner = OnnxRuntimeRunner(self.fp32) if self.emulated else \
                self.backend.runner(self.fp32, replace(self.target, precision="fp32"))
            split.reference = self._predict(runner, split, "fp32")
        return split.reference

    def held(self, names: list[str], split: _Split) -> dict:
        """Predictions of the INT8 model with `names` in float (the model then lies in the work folder)."""
        self.model, held = self.backend.quantise_holding(self.fp32, self.target, self.calib, self.work, names,
                                                         lambda _line: None)
        return self._predict(self.backend.runner(self.model, held), split, f"{len(names)} in float")


def search(target: Target, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
           log: Callable[[str], None], progress=None, limit: int | None = None) -> dict:
    """Search, confirm, and write search.json, search.png and the target-file snippet into `out`."""
    backend, emulated = searching_backend(target, log)
    recipe = calibration.recipe_for(target)
    calib, _ = calibration.build(recipe, data_root, cache_dir() / "calibration")
    items = recipe.left_out(list_val_images(data_root))[:limit]
    selection, confirmation = _Split("selection half", items[0::2]), _Split("confirmation half", items[1::2])
    candidates = _Candidates(target, backend, emulated, fp32_onnx, calib, out / "calibration" / SEARCH, progress)
    ranked, cost = _ranked(target, backend, fp32_onnx, calib, candidates.work, emulated)
    log(f"search: {len(ranked)} convolutions ranked by quantisation noise per share of the {cost}; AP on "
        f"{len(selection.images)} selection images, budget {_words(BUDGET)} points")
    points: dict[int, dict] = {}

    def trial(k: int) -> bool:
        if k not in points:
            names = [c["node"] for c in ranked[:k]]
            preds, reference = candidates.held(names, selection), candidates.reference(selection)
            deltas = ap_deltas(evaluate(preds, gt).aps(), evaluate(reference, gt).aps())
            interval = delta_intervals(preds, reference, gt)
            points[k] = {"float": names, "float_cost_share": _share(ranked[:k], "cost_share"),
                         "float_flops_share": _share(ranked[:k], "flops_share"), **deltas, "interval": interval,
                         "within": _within(deltas) and _within_at_worst(interval)}
            log(f"{k} convolutions in float ({100 * points[k]['float_cost_share']:.1f} % of the {cost}): AP "
                f"{_words(_by_setting(deltas))} points, {'within' if points[k]['within'] else 'beyond'} the budget")
        return points[k]["within"]

    chosen = _least_prefix(trial, len(ranked))
    best = points[chosen]
    confirmed = _confirm(candidates, best["float"], confirmation, gt)
    found = {"target": target.name, "emulated": emulated, "backend": backend.name,
             "quantiser": backend.own_quantiser or calibration.configs_for(target)[0].method, "budget": BUDGET,
             "tolerance": TOLERANCE, "cost": cost, "interval_level": LEVEL, "held": best["within"],
             "selection_images": len(selection.images), "confirmation_images": len(confirmation.images),
             "calibration_source": recipe.source(), "ranking": ranked,
             "points": [points[k] for k in sorted(points)], "chosen": best,
             "confirmation": confirmed, "model": os.path.relpath(candidates.model, out),
             "snippet": snippet(backend, best, cost, emulated)}
    fileio.publish({out / f"{SEARCH}.json": fileio.json_writer(found), out / f"{SEARCH}.png": plots.search_curve(found),
                    out / f"{SEARCH}.toml": lambda tmp: tmp.write_text(found["snippet"], encoding="utf-8")})
    return found


def _ranked(target: Target, backend: Backend, fp32_onnx: Path, calib: calibration.CalibrationSet, work: Path,
            emulated: bool) -> tuple[list[dict], str]:
    """The quantised convolutions, the most noise (local SQNR) per share of the cost first; and the cost's name."""
    batches = []
    for batch in calib.batches():
        batches += [b[None] for b in batch][: RANKING_IMAGES - len(batches)]
        if len(batches) == RANKING_IMAGES:
            break
    twin = backend.qdq_twin(fp32_onnx, target, calib, work)
    convs = [c for c in sensitivity.per_convolution(fp32_onnx, twin, batches) if c["local_sqnr_db"] is not None]
    if emulated:
        shares, cost = {c["node"]: c["flops_share"] for c in convs}, "FLOPs at the calibration input"
    else:
        shares, cost = layer_time.shares(fp32_onnx, batches[0]), "measured time of the FP32 convolutions here"
    convs = [{**c, "cost_share": shares.get(c["node"], c["flops_share"])} for c in convs]
    return sorted(convs, key=lambda c: -10 ** (-c["local_sqnr_db"] / 10) / max(c["cost_share"], 1e-6)), cost


def _least_prefix(within: Callable[[int], bool], n: int) -> int:
    """The shortest prefix length k for which `within(k)` holds: doubling from 0, then bisecting."""
    failed, k = -1, 0
    while not within(k):
        failed, k = k, (1 if k == 0 else min(2 * k, n))
        if failed == n:
            return n  # nothing holds: the whole model in float is the answer the search can give
    while k - failed > 1:
        middle = (failed + k) // 2
        if within(middle):
            k = middle
        else:
            failed = middle
    return k


def _confirm(candidates: _Candidates, names: list[str], split: _Split, gt: GroundTruth) -> dict:
    """The chosen float set on the other half: AP deltas against FP32 on the same images, with their interval."""
    preds, reference = candidates.held(names, split), candidates.reference(split)
    deltas = ap_deltas(evaluate(preds, gt).aps(), evaluate(reference, gt).aps())
    return {**deltas, "interval": delta_intervals(preds, reference, gt), "within_budget": _within(deltas),
            "within_tolerance": _within(deltas, TOLERANCE)}


def _share(convs: list[dict], key: str) -> float:
    return round(float(np.sum([c[key] for c in convs])), 4)


def _within(deltas: dict, allowed: dict = BUDGET) -> bool:
    """Whether no setting lost more AP points than `allowed` (a setting without a figure loses none)."""
    return all((deltas[f"delta_{s}"] or 0) >= -allowed[s] for s in SETTINGS)


def _within_at_worst(interval: dict) -> bool:
    """Whether the interval's worst end loses no more than the tolerance (a setting without one loses none)."""
    return all(interval[s] is None or interval[s][0] >= -TOLERANCE[s] for s in SETTINGS)


def _by_setting(deltas: dict) -> dict:
    """Each setting's AP delta, signed as the CLI's table shows it (`+0.07`; `-` where a setting has no figure)."""
    return {s: "-" if deltas[f"delta_{s}"] is None else f"{deltas[f'delta_{s}']:+.2f}" for s in SETTINGS}


def _words(figures: dict) -> str:
    """easy / medium / hard figures as `a / b / c`."""
    return " / ".join(str(figures[s]) for s in SETTINGS)


def snippet(backend: Backend, point: dict, cost: str, emulated: bool) -> str:
    """The target-file lines that keep the chosen float set (the backend's own key)."""
    flops = "" if cost.startswith("FLOPs") else f", {100 * point['float_flops_share']:.1f} % of the FLOPs"
    lines = [f"# calibrate --search{' (emulated)' if emulated else ''}: {len(point['float'])} convolutions in float, "
             f"{100 * point['float_cost_share']:.1f} % of the {cost}{flops}; AP against FP32 "
             f"{_words(_by_setting(point))} points on the selection half", "[calibration]"]
    lines += [f"{key} = {json.dumps(value, indent=4)}" for key, value in backend.float_setting(point["float"]).items()]
    return "\n".join(lines) + "\n"

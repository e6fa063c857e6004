"""`calibrate --search`: the float set of least cost that keeps an INT8 target's AP within its budget, for the
targets whose INT8 model the toolkit quantises itself (the sweep backends: ONNX Runtime and OpenVINO).

- Sensitivity: each convolution's own quantisation noise (ONNX Runtime's qdq_loss_debug on two calibration
  images, toolkit/sensitivity.py) per share of the model's FLOPs: the most noise for the least cost first.
- Search: growing prefixes of that order (0, 1, 2, 4, 8, ... convolutions left in float) until the AP is within
  the budget, then a bisection of the prefix length between the last that failed and the first that held: about
  2 log2(N) AP evaluations instead of N. A prefix is the natural unit: the order already weighs error against
  cost, and a bisection over it is exact where AP improves monotonically along it, which a pruning pass over
  single layers (N more evaluations) would only refine.
- AP on a selection split (every other non-calibration image), never a calibration image; the budget is half the
  tolerance (0.25 / 0.25 / 0.5 points) so that the choice carries over; confirmed on the other split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from toolkit import calibration, fileio, sensitivity
from toolkit.backends.base import Backend
from toolkit.data.wider import SETTINGS, GroundTruth, list_val_images
from toolkit.errors import InputError
from toolkit.evaluate.deltas import ap_deltas
from toolkit.paths import cache_dir
from toolkit.progress import counter
from toolkit.quantization import evaluate_model
from toolkit.report import plots
from toolkit.target import Target

TOLERANCE = {"easy": 0.5, "medium": 0.5, "hard": 1.0}  # AP points an INT8 target may lose against FP32
BUDGET = {s: points / 2 for s, points in TOLERANCE.items()}  # the search's: half, so that the choice carries over
RANKING_IMAGES = 2  # calibration images the sensitivity is measured on (each tensor of the network is ~1 GB)
SEARCH = "search"


def search(target: Target, backend: Backend, fp32_onnx: Path, data_root: Path, gt: GroundTruth, out: Path,
           log: Callable[[str], None], progress=None, limit: int | None = None) -> dict:
    """Search, confirm, and write search.json, search.png and the target-file snippet into `out`."""
    if not backend.sweep_methods:
        raise InputError(f"--search: target {target.name} calibrates with {backend.name}'s own quantiser; the search "
                         "runs where the toolkit quantises (the onnxruntime and openvino INT8 targets)")
    recipe = calibration.recipe_for(target)
    calib, _ = calibration.build(recipe, data_root, cache_dir() / "calibration")
    items = recipe.left_out(list_val_images(data_root))[:limit]
    selection, confirmation = items[0::2], items[1::2]
    method = calibration.configs_for(target)[0].method
    work = out / "calibration"

    def ap_of(model: Path, images: list, name: str, fp32: bool = False) -> dict:
        with backend.runner(model, replace(target, precision="fp32") if fp32 else target) as runner:
            ap, _ = evaluate_model(runner, images, target.preprocess, target.threshold, gt,
                                   counter(progress, name, len(images)))
        return ap

    def quantised(names: list[str]) -> Path:
        return backend.calibrate(fp32_onnx, calib, target, work / f"centerface.int8.search-{len(names)}.onnx", method,
                                 names)

    reference = ap_of(fp32_onnx, selection, "fp32, selection half", fp32=True)
    ranked = _ranked(fp32_onnx, quantised([]), calib)
    log(f"search: {len(ranked)} convolutions ranked by quantisation noise per FLOP; AP on {len(selection)} selection "
        f"images, budget {_words(BUDGET)} points")
    points: dict[int, dict] = {}

    def trial(k: int) -> bool:
        if k not in points:
            names = [c["node"] for c in ranked[:k]]
            deltas = ap_deltas(ap_of(quantised(names), selection, f"{k} in float"), reference)
            points[k] = {"float": names, "float_flops_share": round(sum(c["flops_share"] for c in ranked[:k]), 4),
                         **deltas, "within": _within(deltas)}
            log(f"{k} convolutions in float ({100 * points[k]['float_flops_share']:.1f} % of the FLOPs): "
                f"AP {_words(_by_setting(deltas))} points, {'within' if points[k]['within'] else 'beyond'} the budget")
        return points[k]["within"]

    chosen = _least_prefix(trial, len(ranked))
    confirmed = _confirm(ap_of, quantised, fp32_onnx, points[chosen]["float"], confirmation)
    found = {"target": target.name, "method": method, "budget": BUDGET, "cost": "FLOPs at the calibration input",
             "selection_images": len(selection), "confirmation_images": len(confirmation),
             "calibration_source": recipe.source(), "ranking": ranked, "points": [points[k] for k in sorted(points)],
             "chosen": points[chosen], "confirmation": confirmed, "snippet": snippet(points[chosen])}
    fileio.publish({out / f"{SEARCH}.json": fileio.json_writer(found), out / f"{SEARCH}.png": plots.search_curve(found),
                    out / f"{SEARCH}.toml": lambda tmp: tmp.write_text(found["snippet"], encoding="utf-8")})
    return found


def _ranked(fp32_onnx: Path, all_int8: Path, calib: calibration.CalibrationSet) -> list[dict]:
    """The quantised convolutions, the most noise (local SQNR) per share of the FLOPs first."""
    batches = []
    for batch in calib.batches():
        batches += [b[None] for b in batch][: RANKING_IMAGES - len(batches)]
        if len(batches) == RANKING_IMAGES:
            break
    convs = [c for c in sensitivity.per_convolution(fp32_onnx, all_int8, batches) if c["local_sqnr_db"] is not None]
    return sorted(convs, key=lambda c: -10 ** (-c["local_sqnr_db"] / 10) / max(c["flops_share"], 1e-6))


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


def _confirm(ap_of, quantised, fp32_onnx: Path, names: list[str], images: list) -> dict:
    """The chosen float set on the other half: AP deltas against FP32 on the same images."""
    deltas = ap_deltas(ap_of(quantised(names), images, "chosen, confirmation half"),
                       ap_of(fp32_onnx, images, "fp32, confirmation half", fp32=True))
    return {**deltas, "within_budget": _within(deltas),
            "within_tolerance": _within(deltas, TOLERANCE)}


def _within(deltas: dict, allowed: dict = BUDGET) -> bool:
    """Whether no setting lost more AP points than `allowed` (a setting without a figure loses none)."""
    return all((deltas[f"delta_{s}"] or 0) >= -allowed[s] for s in SETTINGS)


def _by_setting(deltas: dict) -> dict:
    return {s: deltas[f"delta_{s}"] for s in SETTINGS}


def _words(figures: dict) -> str:
    """easy / medium / hard figures as `a / b / c`."""
    return " / ".join(str(figures[s]) for s in SETTINGS)


def snippet(point: dict) -> str:
    """The target-file lines that keep the chosen float set."""
    names = ", ".join(f'"{n}"' for n in point["float"])
    return (f"# calibrate --search: {len(point['float'])} convolutions in float, {100 * point['float_flops_share']:.1f} % "
            f"of the FLOPs\n[calibration]\nkeep_float = [[{names}]]\n")

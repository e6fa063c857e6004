"""How sure an AP difference is: a bootstrap over images. Two models' predictions on the same images are
resampled together (the same draw of images for both, with replacement), and the 5th and 95th percentiles of
their AP difference over the draws make a 90 % interval. The official protocol sums per-image curves, so a draw
is a weighted sum of the curves computed once (scores stay normalised over the whole split)."""

from __future__ import annotations

import numpy as np

from toolkit.data.wider import SETTINGS, GroundTruth
from toolkit.evaluate.wider_ap import image_pr, setting_result

RESAMPLES = 1000
LEVEL = 0.90


def _stacked(preds: dict[str, np.ndarray], gt: GroundTruth, keys: list[str]) -> tuple[dict, dict]:
    """Per setting: (images, THRESH_NUM, 2) curves and (images,) faces, in the order of `keys`."""
    found = {key: (curves, faces) for key, curves, faces in image_pr(preds, gt)}
    return ({s: np.stack([found[k][0][s] for k in keys]) for s in SETTINGS},
            {s: np.array([found[k][1][s] for k in keys], dtype=float) for s in SETTINGS})


def delta_intervals(preds: dict[str, np.ndarray], reference: dict[str, np.ndarray], gt: GroundTruth,
                    resamples: int = RESAMPLES, seed: int = 0) -> dict[str, list[float] | None]:
    """Per setting, the 90 % interval of AP(preds) - AP(reference) in points over images both predicted; None where
    the images hold no face of that setting."""
    keys = [k for k in gt.images if k in preds and k in reference]
    ours, theirs = _stacked(preds, gt, keys), _stacked(reference, gt, keys)
    draws = np.random.default_rng(seed).multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=resamples)
    intervals = {}
    for s in SETTINGS:
        if not ours[1][s].sum():
            intervals[s] = None
            continue
        deltas = [_ap(ours, s, w) - _ap(theirs, s, w) for w in draws.astype(float)]
        low, high = np.percentile(deltas, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
        intervals[s] = [round(100 * float(low), 2), round(100 * float(high), 2)]
    return intervals


def _ap(stacked: tuple[dict, dict], setting: str, weights: np.ndarray) -> float:
    curves, faces = stacked
    result = setting_result(np.tensordot(weights, curves[setting], axes=1), float(weights @ faces[setting]))
    return result.ap or 0.0

"""A deliberately naive, loop-by-loop statement of the WIDER FACE evaluation protocol.

It follows the widely used evaluation script step by step (per-prediction loops, +1 pixel IoU
as in its Cython `bbox_overlaps`, per-threshold loops), so the vectorised evaluator can be
checked against it on the same prediction files.
"""

from __future__ import annotations

import numpy as np


def iou_plus_one(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    if iw <= 0:
        return 0.0
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ih <= 0:
        return 0.0
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
    return iw * ih / union


def naive_ap(preds: dict, truth: dict, setting: str, iou: float = 0.5, steps: int = 1000) -> float:
    """preds: key -> (n, 5) x y w h score; truth: key -> (boxes (m, 4) xywh, {setting: kept indices})."""
    keys = [k for k in truth if k in preds]
    scores = [s for k in keys for s in preds[k][:, 4]]
    lo, hi = min([1.0] + scores), max([0.0] + scores)
    curve = np.zeros((steps, 2))
    faces = 0
    for key in keys:
        boxes, keep = truth[key]
        kept = set(int(i) for i in keep[setting])
        faces += len(kept)
        pred = preds[key].copy()
        if len(boxes) == 0 or len(pred) == 0:
            continue
        pred[:, 4] = (pred[:, 4] - lo) / (hi - lo)
        state = [0] * len(boxes)  # 0 unmatched, 1 matched (counted face), -1 matched (ignored face)
        proposal = [1] * len(pred)
        recalled = []
        for h, p in enumerate(pred):
            pb = [p[0], p[1], p[0] + p[2], p[1] + p[3]]
            ious = [iou_plus_one(pb, [g[0], g[1], g[0] + g[2], g[1] + g[3]]) for g in boxes]
            best = int(np.argmax(ious))
            if ious[best] >= iou:
                if best not in kept:
                    state[best] = -1
                    proposal[h] = -1
                elif state[best] == 0:
                    state[best] = 1
            recalled.append(sum(1 for s in state if s == 1))
        for t in range(steps):
            thresh = 1 - (t + 1) / steps
            above = [i for i in range(len(pred)) if pred[i, 4] >= thresh]
            if above:
                last = above[-1]
                curve[t, 0] += sum(1 for i in range(last + 1) if proposal[i] == 1)
                curve[t, 1] += recalled[last]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = curve[:, 1] / curve[:, 0]
    recall = curve[:, 1] / faces
    mrec = [0.0] + list(recall) + [1.0]
    mpre = [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    return float(sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i]))

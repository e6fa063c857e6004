"""WIDER FACE AP, official protocol, vectorised numpy (no Cython).

IoU 0.5 with the +1 pixel convention of the official `bbox_overlaps`; a prediction whose best
match is a face the setting ignores is neither TP nor FP; scores min-max normalised over the whole
set; 1000 thresholds `1 - (t + 1) / 1000`; VOC-style AP over the precision envelope.

Memory grows with the number of predictions, never with predictions x thresholds or predictions x faces
(overlaps are computed in chunks), and a prediction file is read only where it fits the memory free.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import machine, reading
from toolkit.data.wider import SETTINGS, GroundTruth, image_key
from toolkit.errors import InputError

IOU = 0.5
THRESH_NUM = 1000
OVERLAP_CELLS = 1 << 22  # prediction x face overlaps computed at once (32 MiB of float64)
READ_BYTES_PER_FILE_BYTE = 8  # a prediction file's text, decoded, and its rows as numbers, per byte of file


@dataclass
class SettingResult:
    ap: float | None  # None: the evaluated images hold no face of this setting
    precision: np.ndarray  # (THRESH_NUM,) from the strictest threshold to the loosest
    recall: np.ndarray
    faces: int


@dataclass
class Evaluation:
    settings: dict[str, SettingResult]
    images: int  # images evaluated
    gt_images: int  # images the ground truth holds
    unmatched_predictions: list[str]  # prediction files with no ground truth

    @property
    def restricted(self) -> bool:
        return self.images < self.gt_images

    def aps(self) -> dict[str, float | None]:
        return {s: None if r.ap is None else round(r.ap, 6) for s, r in self.settings.items()}

    def reasons(self) -> dict[str, str]:
        """Why a setting has no AP (strict JSON has no NaN)."""
        return {s: f"no {s} faces among the {self.images} evaluated images"
                for s, r in self.settings.items() if r.ap is None}

    def summary(self) -> dict:
        summary = {**self.aps(), "images": self.images, "gt_images": self.gt_images,
                   "restricted": self.restricted, "without_ground_truth": self.unmatched_predictions}
        return {**summary, "ap_missing": self.reasons()} if self.reasons() else summary


def read_predictions(pred_dir: Path) -> dict[str, np.ndarray]:
    """`<event>/<image>.txt` files -> key -> (n, 5) float64 x y w h score, in file order."""
    pred_dir = reading.folder(pred_dir, "prediction folder")
    files = sorted(pred_dir.glob("*/*.txt"))
    if not files:
        raise InputError(f"{pred_dir}: no <event>/<image>.txt prediction files")
    return {image_key(f.parent.name, f.stem): _read_prediction_file(f) for f in files}


def _read_prediction_file(path: Path) -> np.ndarray:
    """The image name, the count, then `x y w h score` lines: finite numbers, width and height 0 or more, a
    score from 0 to 1. Read in one pass by NumPy; a file that pass finds fault with is read again line by
    line, to name the line."""
    size = reading.regular_file(path, "prediction file").st_size
    available = machine.available_memory()
    if available is not None and READ_BYTES_PER_FILE_BYTE * size > available:
        raise InputError(f"{path}: {size / 2**20:.0f} MiB of predictions need about "
                         f"{READ_BYTES_PER_FILE_BYTE * size / 2**30:.1f} GiB to read and evaluate, "
                         f"{available / 2**30:.1f} GiB is free here")
    text = reading.read_text(path, limit=None, what="prediction file")
    head = text.split("\n", 2)
    if len(head) < 2 or not head[0].strip() and not head[1].strip():
        raise InputError(f"{path}: a WIDER prediction file needs the image name and a count")
    try:
        count = int(head[1].strip())
    except ValueError:
        raise InputError(f"{path}:2: the count {head[1].strip()!r} is not a whole number") from None
    rows = _rows_at_once(head[2] if len(head) > 2 else "")
    if rows is None:
        rows = _rows_line_by_line(path, text.splitlines()[2:])
    if len(rows) != count:
        raise InputError(f"{path}: the count line says {count} boxes, the file has {len(rows)}")
    return rows


def _rows_at_once(body: str) -> np.ndarray | None:
    """The rows, where every one is five numbers as they must be; None where any is not (or the parse fails)."""
    import io
    import warnings

    if not body.strip():
        return np.zeros((0, 5))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(io.StringIO(body), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if rows.shape[1] != 5 or not np.isfinite(rows).all() or (rows[:, 2:4] < 0).any() \
            or not ((rows[:, 4] >= 0) & (rows[:, 4] <= 1)).all():
        return None
    return rows


def _rows_line_by_line(path: Path, lines: list[str]) -> np.ndarray:
    """The rows, or one line naming the first that is wrong and how."""
    rows = array("d")
    for number, line in enumerate(lines, 3):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.split()]
        except ValueError as exc:
            raise InputError(f"{path}:{number}: malformed prediction ({exc})") from None
        if len(row) != 5:
            raise InputError(f"{path}:{number}: {len(row)} values, expected 5 (x y w h score)")
        if not all(np.isfinite(row)):
            raise InputError(f"{path}:{number}: a value that is not a finite number ({line.strip()})")
        if row[2] < 0 or row[3] < 0:
            raise InputError(f"{path}:{number}: a negative width or height ({line.strip()})")
        if not 0 <= row[4] <= 1:
            raise InputError(f"{path}:{number}: score {row[4]:g} is not from 0 to 1 ({line.strip()})")
        rows.extend(row)
    return np.frombuffer(rows, dtype=np.float64).reshape(-1, 5).copy()


def bbox_overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """IoU (N, K) of x1 y1 x2 y2 boxes with the official +1 pixel convention."""
    iw = np.minimum(boxes[:, None, 2], query[None, :, 2]) - np.maximum(boxes[:, None, 0], query[None, :, 0]) + 1
    ih = np.minimum(boxes[:, None, 3], query[None, :, 3]) - np.maximum(boxes[:, None, 1], query[None, :, 1]) + 1
    area_b = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_q = (query[:, 2] - query[:, 0] + 1) * (query[:, 3] - query[:, 1] + 1)
    inter = iw * ih
    union = area_b[:, None] + area_q[None, :] - inter
    valid = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, inter / np.where(valid, union, 1.0), 0.0)


def _last_index_above(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the last prediction index whose score >= it (-1 when none): the last index whose
    suffix maximum (the best score at or after it, which never rises) is >= the threshold."""
    suffix_max = np.maximum.accumulate(scores[::-1])[::-1]
    return np.searchsorted(-suffix_max, -thresholds, side="right") - 1


def _best_matches(p_xyxy: np.ndarray, gt_xyxy: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's best-overlapping face and whether that overlap reaches `iou`, in chunks of predictions."""
    step = max(1, OVERLAP_CELLS // max(1, len(gt_xyxy)))
    best_gt = np.empty(len(p_xyxy), dtype=np.int64)
    hit = np.empty(len(p_xyxy), dtype=bool)
    for i in range(0, len(p_xyxy), step):
        overlaps = bbox_overlaps(p_xyxy[i:i + step], gt_xyxy)
        best_gt[i:i + step] = overlaps.argmax(axis=1)
        hit[i:i + step] = overlaps[np.arange(len(overlaps)), best_gt[i:i + step]] >= iou
    return best_gt, hit


def _image_pr(pred: np.ndarray, gt_xyxy: np.ndarray, keep: np.ndarray, last: np.ndarray,
              best_gt: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """(THRESH_NUM, 2): proposals counted and faces recalled at each threshold for one image."""
    counts = np.zeros(len(gt_xyxy), dtype=bool)
    counts[keep] = True
    ignored_hit = hit & ~counts[best_gt]
    proposal = ~ignored_hit
    # pred_recall[h]: distinct counted faces matched by predictions 0..h
    first = np.full(len(gt_xyxy), len(pred), dtype=np.int64)
    idx = np.nonzero(hit & counts[best_gt])[0]
    np.minimum.at(first, best_gt[idx], idx)
    recall = np.cumsum(np.bincount(first[first < len(pred)], minlength=len(pred))[: len(pred)])
    proposals = np.cumsum(proposal)
    out = np.zeros((THRESH_NUM, 2))
    ok = last >= 0
    out[ok, 0] = proposals[last[ok]]
    out[ok, 1] = recall[last[ok]]
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate(preds: dict[str, np.ndarray], gt: GroundTruth, iou: float = IOU) -> Evaluation:
    """AP per setting over the images that have predictions (the ground truth is restricted to them)."""
    keys = _matched_keys(preds, gt)
    curves = {s: np.zeros((THRESH_NUM, 2)) for s in SETTINGS}
    faces = dict.fromkeys(SETTINGS, 0)
    for _key, image_curves, image_faces in image_pr(preds, gt, iou):
        for s in SETTINGS:
            faces[s] += image_faces[s]
            curves[s] += image_curves[s]
    results = {s: setting_result(curves[s], faces[s]) for s in SETTINGS}
    return Evaluation(results, len(keys), len(gt.images), sorted(k for k in preds if k not in gt.images))


def setting_result(curve: np.ndarray, faces: float) -> SettingResult:
    """A setting's precision, recall and AP from its summed (THRESH_NUM, 2) proposals / recalled curve."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = curve[:, 1] / curve[:, 0]
        recall = curve[:, 1] / faces
    return SettingResult(voc_ap(recall, precision) if faces else None, precision, recall, int(faces))


def _matched_keys(preds: dict[str, np.ndarray], gt: GroundTruth) -> list[str]:
    keys = [k for k in gt.images if k in preds]
    if not keys:
        raise InputError("no prediction file matches an image of the ground truth",
                         "prediction files must be named <event>/<image>.txt as in WIDER_val/images")
    return keys


def image_pr(preds: dict[str, np.ndarray], gt: GroundTruth, iou: float = IOU):
    """Per image with predictions (in the ground truth's order): its key, its (THRESH_NUM, 2) curve per setting and
    its faces per setting, the scores normalised over all of `preds` (what the official protocol sums)."""
    keys = _matched_keys(preds, gt)
    preds = _normalise_scores({k: preds[k] for k in keys})
    thresholds = 1 - (np.arange(THRESH_NUM) + 1) / THRESH_NUM
    for key in keys:
        truth, pred = gt.images[key], preds[key]
        faces = {s: len(truth.keep[s]) for s in SETTINGS}
        curves = {s: np.zeros((THRESH_NUM, 2)) for s in SETTINGS}
        if len(truth.boxes) and len(pred):
            gt_xyxy = truth.boxes.copy()
            gt_xyxy[:, 2:] += gt_xyxy[:, :2]
            p_xyxy = pred[:, :4].copy()
            p_xyxy[:, 2:] += p_xyxy[:, :2]
            best_gt, hit = _best_matches(p_xyxy, gt_xyxy, iou)
            last = _last_index_above(pred[:, 4], thresholds)
            curves = {s: _image_pr(pred, gt_xyxy, truth.keep[s], last, best_gt, hit) for s in SETTINGS}
        yield key, curves, faces


def _normalise_scores(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max over the whole set, starting from max 0 / min 1 as the official script does."""
    nonempty = [p[:, 4] for p in preds.values() if len(p)]
    lo = min([1.0] + [float(s.min()) for s in nonempty])
    hi = max([0.0] + [float(s.max()) for s in nonempty])
    span = hi - lo or 1.0  # equal scores: one threshold holds them all
    out = {}
    for k, p in preds.items():
        p = p.copy()
        if len(p):
            p[:, 4] = (p[:, 4] - lo) / span
        out[k] = p
    return out

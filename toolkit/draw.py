"""Detections drawn on the image: boxes, scores and the five landmarks (and EMULATED where they were)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from toolkit import fileio
from toolkit.postprocess import Detections

LANDMARK_COLOURS = ((0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 0, 255), (255, 255, 0))  # RGB


def draw(rgb: np.ndarray, det: Detections, min_score: float = 0.0, label: str | None = None) -> np.ndarray:
    """A BGR copy of `rgb` with detections scoring at least `min_score` drawn on it (for cv2's writers)."""
    return cv2.cvtColor(draw_rgb(rgb, det, min_score, label), cv2.COLOR_RGB2BGR)


def draw_rgb(rgb: np.ndarray, det: Detections, min_score: float = 0.0, label: str | None = None) -> np.ndarray:
    """An RGB copy of `rgb` with the detections drawn, and `label` (EMULATED) in its top-left corner."""
    img = rgb.copy()
    thickness = max(1, round(max(img.shape[:2]) / 500))
    if label:
        cv2.putText(img, label, (4 * thickness, 16 * thickness), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness,
                    (255, 0, 0), thickness)
    placed: list[tuple[int, int, int, int]] = []  # the score labels drawn so far
    for i in np.argsort(-np.asarray(det.scores, dtype=np.float64), kind="stable"):  # the surest labelled first
        box, score, lms = det.boxes[i], det.scores[i], det.landmarks[i]
        if score < min_score:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        _score_label(img, f"{score:.2f}", (x1, y1, x2, y2), thickness, placed)
        for (x, y), colour in zip(lms.reshape(5, 2), LANDMARK_COLOURS):
            cv2.circle(img, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    return img


def _score_label(img: np.ndarray, text: str, box: tuple[int, int, int, int], thickness: int,
                 placed: list[tuple[int, int, int, int]]) -> None:
    """The score above the box, else below it; left out where both would overlap a label already drawn (in a
    crowd, two scores run together and neither can be read)."""
    scale = 0.4 * thickness
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x1, y1, _, y2 = box
    for bottom in (max(height, y1 - 3), y2 + height + 3):
        rect = (x1, bottom - height, x1 + width, bottom + base)
        if not any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in placed):
            placed.append(rect)
            cv2.putText(img, text, (x1, bottom), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thickness)
            return


def save(path: Path, bgr: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix or ".jpg", bgr)
    if not ok:
        raise ValueError(f"{path}: cannot encode")
    return fileio.write_bytes(path, data.tobytes())

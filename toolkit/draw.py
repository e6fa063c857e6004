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
    for box, score, lms in zip(det.boxes, det.scores, det.landmarks):
        if score < min_score:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(img, f"{score:.2f}", (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 255, 0), thickness)
        for (x, y), colour in zip(lms.reshape(5, 2), LANDMARK_COLOURS):
            cv2.circle(img, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    return img


def save(path: Path, bgr: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix or ".jpg", bgr)
    if not ok:
        raise ValueError(f"{path}: cannot encode")
    return fileio.write_bytes(path, data.tobytes())

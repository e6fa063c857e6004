"""Detections drawn on the image: boxes, scores and the five landmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from toolkit import fileio
from toolkit.postprocess import Detections

LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255))  # BGR


def draw(rgb: np.ndarray, det: Detections, min_score: float = 0.0) -> np.ndarray:
    """A BGR copy of `rgb` with detections scoring at least `min_score` drawn on it."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(img.shape[:2]) / 500))
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

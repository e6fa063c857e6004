"""Faces hidden as deface's users expect them hidden: each face's box grown by the mask scale (deface's
default 1.3), as an ellipse (or the box itself), blurred, pixelated, filled, or left as it is with the
detection drawn on it. What a face must be to be hidden: its score and size (`--min-score`, `--min-size`)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from toolkit.postprocess import Detections

MODES = ("blur", "mosaic", "solid", "none")
MOSAIC_CELLS = 10  # cells across a face


@dataclass(frozen=True)
class Anonymizer:
    mode: str = "none"  # none: the detections drawn instead
    mask_scale: float = 1.3
    ellipse: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"anonymize mode {self.mode!r}")

    def regions(self, boxes: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Each box grown by the mask scale about its centre, clipped to the picture: x1 y1 x2 y2, whole pixels."""
        found = []
        for x1, y1, x2, y2 in boxes:
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * self.mask_scale / 2, (y2 - y1) * self.mask_scale / 2
            r = (max(0, int(cx - hw)), max(0, int(cy - hh)), min(width, int(np.ceil(cx + hw))), min(height, int(np.ceil(cy + hh))))
            if r[2] > r[0] and r[3] > r[1]:
                found.append(r)
        return found

    def mask(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """The pixels hidden (bool, height x width): what the coverage of faces is measured on."""
        covered = np.zeros((height, width), np.uint8)
        for x1, y1, x2, y2 in self.regions(boxes, width, height):
            covered[y1:y2, x1:x2] |= _shape(x2 - x1, y2 - y1) if self.ellipse else 1
        return covered.astype(bool)

    def apply(self, rgb: np.ndarray, faces: Detections) -> np.ndarray:
        """The picture with `faces` hidden (a copy; the decoder's frame is left as it is)."""
        out = rgb.copy()
        if self.mode == "none":
            return out
        height, width = rgb.shape[:2]
        for x1, y1, x2, y2 in self.regions(faces.boxes, width, height):
            patch = out[y1:y2, x1:x2]
            hidden = self._hidden(patch)
            if self.ellipse:
                np.copyto(patch, hidden, where=_shape(x2 - x1, y2 - y1)[..., None].astype(bool))
            else:
                patch[:] = hidden
        return out

    def _hidden(self, patch: np.ndarray) -> np.ndarray:
        h, w = patch.shape[:2]
        if self.mode == "solid":
            return np.zeros_like(patch)
        if self.mode == "mosaic":
            step = max(1, max(w, h) // MOSAIC_CELLS)  # a cell's side: MOSAIC_CELLS cells across the face
            small = cv2.resize(patch, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        kernel = max(3, (max(w, h) // 3) | 1)  # a blur a third of the face wide: nothing of it is recognisable
        return cv2.stackBlur(patch, (kernel, kernel))  # Gaussian-like, 7x faster at a 120-pixel face


def _shape(width: int, height: int) -> np.ndarray:
    """The ellipse that fills a width x height box (uint8, 1 inside)."""
    shape = np.zeros((height, width), np.uint8)
    cv2.ellipse(shape, (width // 2, height // 2), (max(1, width // 2), max(1, height // 2)), 0, 0, 360, 1, -1)
    return shape


def kept(faces: Detections, min_score: float, min_size: float) -> Detections:
    """The faces scoring at least `min_score` whose side (the square root of the box's area) is `min_size` or more."""
    return faces.where((faces.scores >= min_score) & (faces.sides() >= min_size))

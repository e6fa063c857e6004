"""Two named preprocessing modes, both raw RGB 0..255 float32 NCHW (the official weights' input).

- `letterbox`: the CenterNet affine warp to a fixed size (aspect ratio kept, centred, zero padding,
  INTER_LINEAR), what fixed-shape accelerators need.
- `native`: the original size rounded up to a multiple of 32 (resized), as the official demo does.
Each returns the affine map `out = in * scale + shift` so detections can be mapped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from toolkit.errors import InputError

MODES = ("letterbox", "native")
STRIDE = 32


@dataclass(frozen=True)
class Transform:
    """Per-axis affine from original pixels to network-input pixels, plus both sizes."""

    sx: float
    sy: float
    tx: float
    ty: float
    width: int  # original image
    height: int
    in_width: int  # network input
    in_height: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.sx, 0.0, self.tx], [0.0, self.sy, self.ty]], dtype=np.float64)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2k) interleaved x, y coordinates from input space back to the original image."""
        out = np.empty_like(xy)
        out[..., 0::2] = (xy[..., 0::2] - self.tx) / self.sx
        out[..., 1::2] = (xy[..., 1::2] - self.ty) / self.sy
        return out


@dataclass(frozen=True)
class Preprocess:
    mode: str = "native"
    width: int | None = None  # letterbox output size
    height: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"preprocessing {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.mode == "letterbox":
            if not self.width or not self.height:
                raise InputError("letterbox preprocessing needs a size such as 800x800")
            if self.width < 0 or self.height < 0:
                raise InputError(f"letterbox size {self.width}x{self.height}: width and height must be positive")
            if self.width % STRIDE or self.height % STRIDE:
                raise InputError(f"letterbox size {self.width}x{self.height}: use multiples of {STRIDE}")

    @classmethod
    def parse(cls, mode: str, size: str | None = None) -> Preprocess:
        if mode == "native":
            return cls("native")
        if not size:
            return cls(mode)
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise InputError(f"size {size!r}: expected WxH such as 800x800") from None
        return cls(mode, w, h)

    def describe(self) -> str:
        return f"letterbox {self.width}x{self.height}" if self.mode == "letterbox" else "native /32"

    def as_dict(self) -> dict:
        return {"mode": self.mode, "width": self.width, "height": self.height}

    def transform(self, width: int, height: int) -> Transform:
        if self.mode == "letterbox":
            k = min(self.width / width, self.height / height)
            return Transform(k, k, self.width / 2 - k * width / 2, self.height / 2 - k * height / 2,
                             width, height, self.width, self.height)
        w32, h32 = _ceil32(width), _ceil32(height)
        return Transform(w32 / width, h32 / height, 0.0, 0.0, width, height, w32, h32)

    def image_u8(self, rgb: np.ndarray) -> tuple[np.ndarray, Transform]:
        """RGB uint8 HWC at the network's input size (what AIPP-style inputs take)."""
        h, w = rgb.shape[:2]
        t = self.transform(w, h)
        if self.mode == "letterbox":
            out = cv2.warpAffine(rgb, t.matrix(), (t.in_width, t.in_height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        elif (t.in_width, t.in_height) == (w, h):
            out = rgb
        else:
            out = cv2.resize(rgb, (t.in_width, t.in_height), interpolation=cv2.INTER_LINEAR)
        return out, t

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, Transform]:
        """RGB uint8 HWC -> float32 CHW (0..255) and its transform."""
        img, t = self.image_u8(rgb)
        return to_chw_float(img), t


def to_chw_float(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def _ceil32(v: int) -> int:
    return int(math.ceil(v / STRIDE) * STRIDE)

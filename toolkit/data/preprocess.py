"""Three named preprocessing modes, all raw RGB 0..255 float32 NCHW (the official weights' input).

- `letterbox`: the CenterNet affine warp to a fixed size (aspect ratio kept, centred, zero padding,
  INTER_LINEAR), what fixed-shape accelerators need.
- `native`: the original size rounded up to a multiple of 32 (resized), as the official demo does.
- `buckets`: a few fixed sizes (shape buckets, the chips' "gears"); each image goes to the smallest
  bucket that holds it without downscaling (else the largest) and is letterboxed into it, never enlarged.
  Batches form per bucket, so fixed-shape chips keep native-size accuracy with full batches.
Each returns the affine map `out = in * scale + shift` so detections can be mapped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from toolkit.errors import InputError

MODES = ("letterbox", "native", "buckets")
STRIDE = 32
NCHW_F32, NHWC_U8 = "nchw-f32", "nhwc-u8"  # the batch layouts runners take (NHWC uint8: AIPP models)


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
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) per bucket, smallest area first

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"preprocessing {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.mode == "letterbox":
            if not self.width or not self.height:
                raise InputError("letterbox preprocessing needs a size such as 800x800")
            _check_size(self.width, self.height, "letterbox size")
        if self.mode == "buckets":
            if not self.buckets:
                raise InputError("buckets preprocessing needs sizes such as 1024x576,1024x768,1024x1024")
            for w, h in self.buckets:
                _check_size(w, h, "bucket")
            ordered = tuple(sorted({(int(w), int(h)) for w, h in self.buckets}, key=lambda s: (s[0] * s[1], s)))
            object.__setattr__(self, "buckets", ordered)

    @classmethod
    def parse(cls, mode: str, size: str | None = None) -> Preprocess:
        """`size` is WxH (letterbox) or a comma-separated list of WxH (buckets)."""
        if mode == "native":
            return cls("native")
        if not size:
            return cls(mode)
        sizes = [_parse_size(part) for part in size.split(",") if part.strip()]
        if mode == "buckets":
            return cls(mode, buckets=tuple(sizes))
        if len(sizes) != 1:
            raise InputError(f"size {size!r}: letterbox takes one WxH such as 800x800")
        return cls(mode, *sizes[0])

    def sizes(self) -> list[tuple[int, int]]:
        """The (width, height) inputs a fixed-shape model must take: one for letterbox, each bucket's."""
        if self.mode == "letterbox":
            return [(self.width, self.height)]
        return list(self.buckets)

    def describe(self) -> str:
        if self.mode == "letterbox":
            return f"letterbox {self.width}x{self.height}"
        if self.mode == "buckets":
            return "buckets " + ",".join(f"{w}x{h}" for w, h in self.buckets)
        return "native /32"

    def as_dict(self) -> dict:
        found = {"mode": self.mode, "width": self.width, "height": self.height}
        return {**found, "buckets": [list(b) for b in self.buckets]} if self.buckets else found

    def bucket_for(self, width: int, height: int) -> tuple[int, int]:
        """The smallest bucket that holds a width x height image without downscaling, else the largest."""
        return next(((w, h) for w, h in self.buckets if w >= width and h >= height),
                    max(self.buckets, key=lambda s: (s[0] * s[1], s)))

    def transform(self, width: int, height: int) -> Transform:
        if self.mode in ("letterbox", "buckets"):
            out_w, out_h = (self.width, self.height) if self.mode == "letterbox" else self.bucket_for(width, height)
            k = min(out_w / width, out_h / height)
            if self.mode == "buckets":
                k = min(k, 1.0)  # a bucket never enlarges an image
            return Transform(k, k, out_w / 2 - k * width / 2, out_h / 2 - k * height / 2, width, height, out_w, out_h)
        w32, h32 = _ceil32(width), _ceil32(height)
        return Transform(w32 / width, h32 / height, 0.0, 0.0, width, height, w32, h32)

    def image_u8(self, rgb: np.ndarray) -> tuple[np.ndarray, Transform]:
        """RGB uint8 HWC at the network's input size (what AIPP-style inputs take)."""
        h, w = rgb.shape[:2]
        t = self.transform(w, h)
        if self.mode != "native":
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
        return into_batch([img], NCHW_F32)[0], t


def batch_shape(layout: str, n: int, height: int, width: int) -> tuple[int, int, int, int]:
    return (n, height, width, 3) if layout == NHWC_U8 else (n, 3, height, width)


def batch_dtype(layout: str) -> type[np.generic]:
    return np.uint8 if layout == NHWC_U8 else np.float32


def into_batch(images: list[np.ndarray], layout: str, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HWC images of one size -> a batch in `layout`, written into `out` (a buffer of at least
    that many images) when given: no float conversion on the host for NHWC uint8."""
    height, width = images[0].shape[:2]
    batch = out[: len(images)] if out is not None else np.empty(batch_shape(layout, len(images), height, width),
                                                                 batch_dtype(layout))
    for slot, image in zip(batch, images):
        if layout == NHWC_U8:
            np.copyto(slot, image)
        else:  # uint8 planes, each cast into its float32 plane (a third faster than casting, then splitting)
            for plane, channel in zip(slot, cv2.split(image)):
                np.copyto(plane, channel, casting="unsafe")
    return batch


def _ceil32(v: int) -> int:
    return int(math.ceil(v / STRIDE) * STRIDE)


def describe_preprocess(saved: dict) -> str:
    """A result.json `preprocess` record in words: 'letterbox 800x800', 'buckets 1024x576,...', 'native'."""
    if saved.get("buckets"):
        return "buckets " + ",".join(f"{w}x{h}" for w, h in saved["buckets"])
    return f"{saved['mode']} {saved['width']}x{saved['height']}" if saved.get("width") else saved["mode"]


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise InputError(f"size {text.strip()!r}: expected WxH such as 800x800") from None
    return w, h


def _check_size(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{what} {width}x{height}: width and height must be positive")
    if width % STRIDE or height % STRIDE:
        raise InputError(f"{what} {width}x{height}: use multiples of {STRIDE}")

"""Test-time augmentation's passes: each image seen at several scales, each pass also mirrored, every pass
mapped onto what the target takes.

A pass at scale s sees the image at s times the target's own single-scale size. On a native target (any
input size) that is the image resized to s x its size, rounded up to 32. On a fixed-shape target (letterbox,
buckets) the scaled image goes into the target's input (the smallest bucket that holds it) unenlarged and
centred when it fits, else into overlapping tiles of that input (the largest bucket): a 2x pass of a
1024-wide image on a 1024-wide gear is 3 tiles across, since the chip takes no 2048-wide input. Detections
touching a tile's cut edge are dropped (the tile that holds the face whole finds it). `max_side` caps a
pass's scaled longest side (the upscaled passes' cost grows with its square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from toolkit.data.preprocess import STRIDE, Preprocess, Transform
from toolkit.errors import InputError

MERGES = ("vote", "nms")  # box voting (score-weighted averaging of each cluster), or plain NMS
CUT_MARGIN = 2.0  # input pixels: a box this close to a tile's cut edge is a cut face
FIT_SLACK = 1e-6  # input pixels: a scaled side this far over the input still fits (800 / 1366 * 1366 > 800)


@dataclass(frozen=True)
class TtaPlan:
    """What a TTA run does. `scales` of the single-scale size; `flip`: the scales also run mirrored; `merge` the
    passes' detections (at `iou`); `max_side`: the cap on a pass's scaled longest side; `overlap`: the tiles'
    (input pixels, fixed-shape targets). Per pass kind, the faces it is kept for (original pixels, the square
    root of the box area): an upscaled pass's below `upscaled_below`, a downscaled pass's from `downscaled_from`.
    The upscaled passes run second, only on images whose 1x pass found a face below `upscale_where_below`
    scoring above `upscale_where_score` (0: on every image). The defaults were chosen on one half of the
    subset and confirmed on the other (docs/results.md, "Test-time augmentation")."""

    scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    flip: tuple[float, ...] = (1.0,)
    merge: str = "vote"
    iou: float = 0.5
    max_side: int = 2048
    overlap: int = 128
    upscaled_below: float = 64
    downscaled_from: float = 32
    upscale_where_below: float = 20
    upscale_where_score: float = 0.1

    def __post_init__(self) -> None:
        if not self.scales or any(not 0.1 <= s <= 4 for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise InputError(f"tta scales {list(self.scales)}: give distinct scales between 0.1 and 4")
        if not set(self.flip) <= set(self.scales):
            raise InputError(f"tta flip {list(self.flip)}: mirror only scales the plan runs ({list(self.scales)})")
        if self.merge not in MERGES:
            raise InputError(f"tta merge {self.merge!r}: choose one of {', '.join(MERGES)}")
        if not 0 < self.iou < 1 or self.max_side < STRIDE or self.overlap < 0:
            raise InputError(f"tta iou {self.iou}, max_side {self.max_side}, overlap {self.overlap}: "
                             f"iou in (0, 1), max_side at least {STRIDE}, overlap 0 or more")

    @classmethod
    def of_table(cls, table: dict) -> TtaPlan:
        """A target file's [tta] table (already checked against the schema); missing keys keep the defaults."""
        found = {k: tuple(float(s) for s in v) if k in ("scales", "flip") else v for k, v in table.items()}
        return cls(**found)

    def keeps(self, scale: float, sides: np.ndarray) -> np.ndarray:
        """Which faces (their sides, original pixels) a pass at `scale` is kept for."""
        if scale > 1:
            return sides < self.upscaled_below
        return sides >= self.downscaled_from if scale < 1 else np.ones(len(sides), bool)

    def as_dict(self) -> dict:
        return {"scales": list(self.scales), "flip": list(self.flip), "merge": self.merge, "iou": self.iou,
                "max_side": self.max_side, "overlap": self.overlap, "upscaled_below": self.upscaled_below,
                "downscaled_from": self.downscaled_from, "upscale_where_below": self.upscale_where_below,
                "upscale_where_score": self.upscale_where_score}


@dataclass(frozen=True)
class View:
    """One pass over an image: its scale as asked (the pass may be capped below it), whether mirrored, its
    tile (column, row; (0, 0) untiled) and the map to the input; `cuts`: its left, top, right, bottom edges
    that cut through the scaled image (tiles)."""

    scale: float
    mirrored: bool
    tile: tuple[int, int]
    transform: Transform
    cuts: tuple[bool, bool, bool, bool] = (False, False, False, False)
    resized: bool = False  # a native pass: the image resized, no padding

    @property
    def tiled(self) -> bool:
        return any(self.cuts)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """The pass's uint8 HWC input from the original RGB image: resized (native) or warped (fixed shapes),
        as the target's own preprocessing makes its input, then mirrored where the pass is."""
        t = mirrored(self.transform) if self.mirrored else self.transform  # mirroring twice: the unmirrored map
        if not self.resized:
            out = cv2.warpAffine(rgb, t.matrix(), (t.in_width, t.in_height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        elif (t.in_width, t.in_height) == (t.width, t.height):
            out = rgb
        else:
            out = cv2.resize(rgb, (t.in_width, t.in_height), interpolation=cv2.INTER_LINEAR)
        return cv2.flip(out, 1) if self.mirrored else out

    def uncut(self, boxes: np.ndarray) -> np.ndarray:
        """Which of the pass's boxes (original pixels) keep clear of its cut edges."""
        if not self.tiled:
            return np.ones(len(boxes), bool)
        t = self.transform
        corners = t.to_original(np.array([[0.0, 0.0, t.in_width, t.in_height]]))[0]
        x0, x1 = sorted(corners[0::2])
        y0, y1 = sorted(corners[1::2])
        margin_x, margin_y = CUT_MARGIN / abs(t.sx), CUT_MARGIN / abs(t.sy)
        left, top, right, bottom = self.cuts
        keep = np.ones(len(boxes), bool)
        if left:
            keep &= boxes[:, 0] > x0 + margin_x
        if top:
            keep &= boxes[:, 1] > y0 + margin_y
        if right:
            keep &= boxes[:, 2] < x1 - margin_x
        if bottom:
            keep &= boxes[:, 3] < y1 - margin_y
        return keep


def mirrored(t: Transform) -> Transform:
    """The map onto the mirrored input: x' = in_width - x."""
    return replace(t, sx=-t.sx, tx=t.in_width - t.tx)


def views(pre: Preprocess, plan: TtaPlan, width: int, height: int, upscaled: bool | None = None) -> list[View]:
    """The passes over a width x height image (`upscaled` True / False: only those above / at or below 1x), the
    1x pass (when asked) first, each mirrored twin right after its original (so they share a batch)."""
    scales = sorted((s for s in plan.scales if upscaled is None or (s > 1) == upscaled), key=lambda s: (s != 1.0, s))
    found: list[View] = []
    for scale in scales:
        for view in _scaled(pre, plan, scale, width, height):
            found.append(view)
            if scale in plan.flip:
                found.append(replace(view, mirrored=True, transform=mirrored(view.transform),
                                     cuts=(view.cuts[2], view.cuts[1], view.cuts[0], view.cuts[3])))
    return found


def _scaled(pre: Preprocess, plan: TtaPlan, scale: float, width: int, height: int) -> list[View]:
    """The passes of one scale: none where `max_side` caps an upscaling pass down to the 1x pass's size."""
    if scale == 1.0:  # the target's own single-scale input
        return [View(scale, False, (0, 0), pre.transform(width, height), resized=pre.mode == "native")]
    single = 1.0 if pre.mode == "native" else pre.transform(width, height).sx  # native: the image's own size
    cap = plan.max_side / max(width, height)
    if scale > 1 and cap <= single:
        return []
    k = min(scale * single, cap)
    if pre.mode == "native":  # rounded up to 32, as the target's own input
        w32, h32 = _ceil32(k * width), _ceil32(k * height)
        return [View(scale, False, (0, 0), Transform(w32 / width, h32 / height, 0.0, 0.0, width, height, w32, h32),
                     resized=True)]
    scaled_w, scaled_h = k * width, k * height
    in_w, in_h = _input_for(pre, scaled_w, scaled_h)
    xs, ys = _offsets(scaled_w, in_w, plan.overlap), _offsets(scaled_h, in_h, plan.overlap)
    made = []
    for row, (ty, top, bottom) in enumerate(ys):
        for col, (tx, left, right) in enumerate(xs):
            made.append(View(scale, False, (col, row), Transform(k, k, tx, ty, width, height, in_w, in_h),
                             (left, top, right, bottom)))
    return made


def _input_for(pre: Preprocess, scaled_w: float, scaled_h: float) -> tuple[int, int]:
    """The fixed input a scaled image goes into: the letterbox size, or the smallest bucket that holds it
    (else the largest, tiled)."""
    if pre.mode == "letterbox":
        return pre.width, pre.height
    return pre.bucket_for(math.ceil(scaled_w), math.ceil(scaled_h))


def _offsets(length: float, window: int, overlap: int) -> list[tuple[float, bool, bool]]:
    """Along one axis: each window's shift (input = original * k + shift) and whether its low and high edges
    cut the scaled image. One centred window where the image fits, else evenly spread overlapping ones."""
    if length <= window + FIT_SLACK:
        return [(window / 2 - length / 2, False, False)]
    if overlap >= window:
        raise InputError(f"tta overlap {overlap}: must be below the input's side ({window}) it tiles")
    count = math.ceil((length - overlap) / (window - overlap))
    starts = np.linspace(0, length - window, count).round()
    return [(-float(s), bool(s > 0), bool(s + window < length)) for s in starts]


def _ceil32(v: float) -> int:
    return max(STRIDE, int(math.ceil(v / STRIDE) * STRIDE))


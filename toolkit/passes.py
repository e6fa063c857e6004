"""An image's test-time augmentation passes in two rounds: first the 1x pass, its mirror and the downscaled
passes; then, only for the images whose 1x pass found small faces, the upscaled ones (the costly passes,
which the other images do not need). Passes are collected as post-processing decodes them (in any order,
from several threads); an image is merged and handed on once its last pass is in. Also what the passes were,
for result.json."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from toolkit.data.preprocess import Preprocess
from toolkit.data.tta import TtaPlan, View, views
from toolkit.postprocess import Detections, merged

MAX_LISTED = 8  # input sizes listed per scale (fixed-shape targets have a few; native runs one per image size)


@dataclass
class _Image:
    parts: list[Detections | None]
    outputs: dict[str, np.ndarray] | None = None  # the 1x pass's (or the first pass's)
    kept: list[Detections] = field(default_factory=list)  # the first round's, while the second runs


class PassCollector:
    def __init__(self, plan: TtaPlan, pre: Preprocess) -> None:
        self.plan, self.pre = plan, pre
        self.upscaled = False  # the round now running: the second runs the upscaled passes
        self.second: set[str] = set()  # images the second round runs
        self.pending: dict[str, _Image] = {}
        self.lock = threading.Lock()
        self.counts: dict[float, dict[str, int]] = {s: {"passes": 0, "tiles": 0} for s in plan.scales}
        self.inputs: dict[float, dict[str, int]] = {s: {} for s in plan.scales}  # per scale: passes per input WxH

    def views(self, width: int, height: int) -> tuple[View, ...]:
        """An image's passes in the round now running."""
        return tuple(views(self.pre, self.plan, width, height, upscaled=self.upscaled))

    def add(self, key: str, index: int, seen: tuple[View, ...], found: Detections,
            outputs: dict[str, np.ndarray]) -> tuple[Detections, dict[str, np.ndarray]] | None:
        """One pass's detections (original pixels); the image's merged detections and its 1x outputs once its
        last pass is in, else None. Passes merge in their plan order: the same run twice gives the same bytes."""
        view = seen[index]
        kept = found.where(view.uncut(found.boxes) & self.plan.keeps(view.scale, found.sides()))
        with self.lock:
            image = self.pending.setdefault(key, _Image([None] * len(seen)))
            image.parts[index] = kept
            if index == 0 and not self.upscaled:
                image.outputs = outputs
            if any(p is None for p in image.parts):
                return None
            self._count(seen)
            parts = [*image.kept, *image.parts]
            if not self.upscaled and self._needs_upscaling(seen, image.parts):
                self.second.add(key)
                image.kept, image.parts = parts, []
                return None
            del self.pending[key]
        return merged(parts, self.plan.merge, self.plan.iou), image.outputs

    def start_upscaled(self) -> None:
        """The second round: the pending images' upscaled passes."""
        self.upscaled = True
        for image in self.pending.values():
            image.parts = []

    def expect(self, key: str, count: int) -> None:
        """The second round's pass count of an image (its views are made by a worker)."""
        with self.lock:
            self.pending[key].parts = [None] * count

    def _needs_upscaling(self, seen: tuple[View, ...], parts: list[Detections]) -> bool:
        t = seen[0].transform
        if not views(self.pre, self.plan, t.width, t.height, upscaled=True):  # none asked, or capped away
            return False
        if self.plan.upscale_where_below <= 0:
            return True
        first = parts[0] if seen[0].scale == 1.0 and not seen[0].mirrored else Detections.joined(parts)
        small = first.sides() < self.plan.upscale_where_below
        return bool(np.any(small & (first.scores > self.plan.upscale_where_score)))

    def _count(self, seen: tuple[View, ...]) -> None:
        for view in seen:
            counts = self.counts[view.scale]
            counts["passes"] += 1
            counts["tiles"] += view.tiled
            size = f"{view.transform.in_width}x{view.transform.in_height}"
            self.inputs[view.scale][size] = self.inputs[view.scale].get(size, 0) + 1

    def summary(self, images: int) -> dict:
        """result.json's `tta`: the plan, the images the upscaled passes ran on, and per scale the passes an image
        got on average, how many were tiles, and the inputs they went in (how the passes met a fixed-shape
        target's sizes; native: each image's own)."""
        per_scale = {}
        for scale, counts in self.counts.items():
            inputs = self.inputs[scale]
            per_scale[f"{scale:g}"] = {"passes_per_image": round(counts["passes"] / max(1, images), 3),
                                       "tiles": counts["tiles"],
                                       "inputs": dict(sorted(inputs.items())) if len(inputs) <= MAX_LISTED
                                       else f"{len(inputs)} sizes"}
        return {**self.plan.as_dict(), "upscaled_images": len(self.second), "images": images, "per_scale": per_scale}

"""A target's `[tensorrt]` section: the optimisation profile, workspace and device."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit import schema
from toolkit.errors import InputError
from toolkit.target import Target

PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class TensorRTSettings:
    SCHEMA = {"min_batch": schema.whole(1), "opt_batch": schema.whole(1), "max_batch": schema.whole(1),
              "workspace_mb": schema.whole(1), "device_id": schema.whole(0)}  # what [tensorrt] may hold

    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mb: int
    device_id: int
    width: int  # the largest input (the only one without buckets)
    height: int
    sizes: tuple[tuple[int, int], ...]  # (width, height): one optimisation profile each
    keep_fp16: tuple[str, ...] = ()  # INT8: node-name patterns left unquantised (FP16) in the Q/DQ model

    @classmethod
    def of(cls, target: Target) -> TensorRTSettings:
        raw = dict(target.extra.get("tensorrt", {}))
        where = f"target {target.name} [tensorrt]"
        if target.precision not in PRECISIONS:
            raise InputError(f"target {target.name}: precision {target.precision!r} is not one of {', '.join(PRECISIONS)}")
        images = tuple(target.input_sizes("an optimisation profile has fixed image sizes"))
        width, height = max(images, key=lambda s: (s[0] * s[1], s))
        sizes = target.batch_sizes
        s = cls(target.precision, int(raw.get("min_batch", min(sizes))), int(raw.get("opt_batch", max(sizes))),
                int(raw.get("max_batch", max(sizes))), int(raw.get("workspace_mb", 4096)), int(raw.get("device_id", 0)),
                width, height, images, tuple(target.extra.get("calibration", {}).get("keep_fp16", [])))
        if not 1 <= s.min_batch <= s.opt_batch <= s.max_batch:
            raise InputError(f"{where}: need 1 <= min_batch <= opt_batch <= max_batch, got {s.min_batch}, {s.opt_batch}, {s.max_batch}")
        if not all(s.min_batch <= b <= s.max_batch for b in sizes):
            raise InputError(f"{where}: batch sizes {list(sizes)} fall outside the profile {s.min_batch}..{s.max_batch}")
        return s

    def shape(self, batch: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """NCHW at `size` (width, height), by default the largest."""
        width, height = size or (self.width, self.height)
        return (batch, 3, height, width)

    def profile(self, height: int, width: int) -> int:
        """The optimisation profile for a height x width input."""
        try:
            return self.sizes.index((width, height))
        except ValueError:
            raise InputError(f"input {height}x{width} (HxW): the engine has profiles for "
                             f"{', '.join(f'{h}x{w}' for w, h in self.sizes)}") from None

"""A target's `[tensorrt]` section: the optimisation profile, workspace and device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.targets import Target

PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class TensorRTSettings:
    KEYS = frozenset({"min_batch", "opt_batch", "max_batch", "workspace_mb", "device_id"})  # what [tensorrt] may hold

    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mb: int
    device_id: int
    width: int
    height: int

    @classmethod
    def of(cls, target: Target) -> TensorRTSettings:
        raw = dict(target.extra.get("tensorrt", {}))
        where = f"target {target.name} [tensorrt]"
        if target.precision not in PRECISIONS:
            raise InputError(f"target {target.name}: precision {target.precision!r} is not one of {', '.join(PRECISIONS)}")
        width, height = target.fixed_size("the engine's profile has a fixed image size")
        sizes = target.batch_sizes
        s = cls(target.precision, int(raw.get("min_batch", min(sizes))), int(raw.get("opt_batch", max(sizes))),
                int(raw.get("max_batch", max(sizes))), int(raw.get("workspace_mb", 4096)), int(raw.get("device_id", 0)),
                width, height)
        if not 1 <= s.min_batch <= s.opt_batch <= s.max_batch:
            raise InputError(f"{where}: need 1 <= min_batch <= opt_batch <= max_batch, got {s.min_batch}, {s.opt_batch}, {s.max_batch}")
        if not all(s.min_batch <= b <= s.max_batch for b in sizes):
            raise InputError(f"{where}: batch sizes {list(sizes)} fall outside the profile {s.min_batch}..{s.max_batch}")
        return s

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.height, self.width)

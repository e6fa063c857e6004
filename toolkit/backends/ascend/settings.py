"""A target's `[ascend]` section: chip, chips per card, AIPP, device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.targets import Target

SOCS = ("Ascend310", "Ascend310P3")


@dataclass(frozen=True)
class AscendSettings:
    KEYS = frozenset({"soc_version", "chips_per_card", "aipp", "device_id"})  # what [ascend] may hold

    soc_version: str
    chips_per_card: int
    aipp: bool  # the .om takes uint8 HWC and normalises on the chip
    device_id: int
    width: int  # the largest input (the only one without buckets)
    height: int
    sizes: tuple[tuple[int, int], ...]  # (width, height) per gear: atc --dynamic_image_size when several

    @property
    def gears(self) -> bool:
        return len(self.sizes) > 1

    @property
    def aipp_source_size(self) -> tuple[int, int]:
        """AIPP's src_image_size_w / _h: the one input size, or 0 x 0 with gears (CANN: static AIPP with
        dynamic image size takes no source size, no crop, no padding)."""
        return (0, 0) if self.gears else (self.width, self.height)

    def static_hw(self) -> tuple[int | None, int | None]:
        """The static ONNX's height and width: fixed, or left dynamic for the gears."""
        return (None, None) if self.gears else (self.height, self.width)

    @classmethod
    def of(cls, target: Target) -> AscendSettings:
        raw = dict(target.extra.get("ascend", {}))
        where = f"target {target.name} [ascend]"
        if raw.get("soc_version") not in SOCS:
            raise InputError(f"{where}: soc_version {raw.get('soc_version')!r} is not one of {', '.join(SOCS)}")
        sizes = tuple(target.input_sizes("an .om takes fixed image sizes"))
        width, height = max(sizes, key=lambda s: (s[0] * s[1], s))
        return cls(raw["soc_version"], int(raw.get("chips_per_card", 1)), bool(raw.get("aipp", False)),
                   int(raw.get("device_id", 0)), width, height, sizes)

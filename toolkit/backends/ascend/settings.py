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
    width: int
    height: int

    @classmethod
    def of(cls, target: Target) -> AscendSettings:
        raw = dict(target.extra.get("ascend", {}))
        where = f"target {target.name} [ascend]"
        if raw.get("soc_version") not in SOCS:
            raise InputError(f"{where}: soc_version {raw.get('soc_version')!r} is not one of {', '.join(SOCS)}")
        width, height = target.fixed_size("an .om has a static input")
        return cls(raw["soc_version"], int(raw.get("chips_per_card", 1)), bool(raw.get("aipp", False)),
                   int(raw.get("device_id", 0)), width, height)

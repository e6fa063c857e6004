"""A target's `[ascend]` section: chip, chips per card, AIPP, device."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit import schema
from toolkit.errors import InputError
from toolkit.target import Target

SOCS = ("Ascend310", "Ascend310P3")
# The CANN releases each chip's targets take, [from, before): what the toolkit was checked against (CANN 8.0),
# and CANN 8.5 dropping the Ascend310 from atc's default operator packages (reference.md, 2026-12-01).
CANN_RELEASES = {"Ascend310": ((8, 0), (8, 5)), "Ascend310P3": ((8, 0), None)}


@dataclass(frozen=True)
class AscendSettings:
    SCHEMA = {"soc_version": schema.TEXT, "chips_per_card": schema.whole(1), "aipp": schema.FLAG,
              "device_id": schema.whole(0)}  # what [ascend] may hold

    soc_version: str
    chips_per_card: int
    aipp: bool  # the .om takes uint8 HWC and normalises on the chip
    device_id: int
    width: int  # the largest input (the only one without buckets)
    height: int
    sizes: tuple[tuple[int, int], ...]  # (width, height) per gear: atc --dynamic_image_size when several
    skip_layers: tuple[str, ...] = ()  # INT8: node names AMCT leaves unquantised (FP16 on the chip)

    @property
    def gears(self) -> bool:
        return len(self.sizes) > 1

    @property
    def aipp_source_size(self) -> tuple[int, int]:
        """AIPP's src_image_size_w / _h: the one input size, or 0 x 0 with gears (CANN: static AIPP with
        dynamic image size takes no source size, no crop, no padding)."""
        return (0, 0) if self.gears else (self.width, self.height)

    @staticmethod
    def releases_take(soc: str, version: str | None) -> bool:
        """Whether CANN `version` ('8.0.0', '8.5.RC1') builds `soc`'s targets (an unreadable version: assumed)."""
        found = tuple(int(x) for x in (version or "").split(".")[:2] if x.isdigit())
        if len(found) < 2:
            return True
        low, high = CANN_RELEASES[soc]
        return low <= found and (high is None or found < high)

    def cann_problem(self, version: str | None) -> str | None:
        """Why the installed CANN `version` cannot build this chip's targets; None when it can (or is unknown)."""
        if self.releases_take(self.soc_version, version):
            return None
        low, high = CANN_RELEASES[self.soc_version]
        until = f" before {high[0]}.{high[1]}" if high else " or newer"
        return (f"CANN {version}: {self.soc_version} targets take CANN {low[0]}.{low[1]}{until}"
                + (" (8.5 dropped the Ascend310 from atc's default operator packages)" if high else ""))

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
        if target.precision == "int8" and len(sizes) > 1:
            raise InputError(f"target {target.name}: INT8 with gears ({len(sizes)} input sizes): AMCT's deploy model "
                             "cannot take atc --dynamic_image_size", "use one input size (letterbox) for INT8")
        width, height = max(sizes, key=lambda s: (s[0] * s[1], s))
        return cls(raw["soc_version"], int(raw.get("chips_per_card", 1)), bool(raw.get("aipp", False)),
                   int(raw.get("device_id", 0)), width, height, sizes,
                   tuple(target.extra.get("calibration", {}).get("skip_layers", [])))

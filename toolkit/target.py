"""A target as the toolkit holds it once its file is read (toolkit/targets.py reads the files). A leaf:
backends, the chain and the flows import it; it imports nothing of theirs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from toolkit.data.preprocess import Preprocess
from toolkit.data.tta import TtaPlan
from toolkit.errors import InputError


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    description: str
    precision: str
    preprocess: Preprocess
    batch_sizes: tuple[int, ...]
    runs_in: str  # "host" or "container"
    threshold: float = 0.05
    summary: str = ""  # a few words that tell it from the other targets (the `targets` table)
    export_shape: str = "dynamic"  # BxCxHxW or "dynamic"
    export_opset: int = 17  # the ONNX opset of the export (Ascend: what its CANN's AMCT and atc take)
    ap_reference: bool = False  # the run `report` measures every accuracy delta against
    published: str | None = None  # the published row (report/published.py) `report` shows beside this target
    extra: dict = field(default_factory=dict)  # backend-specific keys
    device_ids: tuple[int, ...] | str | None = None  # --device-ids: chips / GPUs, "all", or None (the file's)
    tta_plan: TtaPlan = field(default_factory=TtaPlan)  # the file's [tta] (else the defaults): what --tta runs
    tta: bool = False  # --tta: every image through the plan's passes

    @property
    def passes(self) -> TtaPlan | None:
        """The TTA plan in force, None for a single-scale run."""
        return self.tta_plan if self.tta else None

    @property
    def folder(self) -> str:
        """Its run folder's name under runs/: a TTA run's beside the single-scale one's."""
        return f"{self.name}-tta" if self.tta else self.name

    def with_extra(self, key: str, value: dict) -> Target:
        """This target with its backend-specific table `key` replaced (a command line's override)."""
        return replace(self, extra={**self.extra, key: value})

    def with_tta(self, on: bool) -> Target:
        return replace(self, tta=on) if on else self

    def input_sizes(self, why: str) -> list[tuple[int, int]]:
        """The (width, height) inputs of a fixed-shape model (one, or one per bucket); fixed-shape
        backends say `why` they need them."""
        if self.preprocess.mode == "native":
            raise InputError(f"target {self.name}: {why}, so preprocess must be letterbox or buckets")
        return self.preprocess.sizes()

    def overridden(self, preprocess: Preprocess | None, batch_size: int | None) -> Target:
        """This target with a command line's --preprocess / --size and --batch-size (converted for and
        run at those, so the plan, the artefacts and the inference agree)."""
        target = self if preprocess is None else replace(self, preprocess=preprocess)
        if batch_size is None:
            return target
        if batch_size < 1:
            raise InputError(f"batch size {batch_size}: must be 1 or more")
        return replace(target, batch_sizes=(batch_size, *(b for b in self.batch_sizes if b != batch_size)))

    def on_devices(self, device_ids: list[int] | str | None) -> Target:
        """This target on the devices a command line names (a list of ids, or "all")."""
        if device_ids is None:
            return self
        return replace(self, device_ids=device_ids if isinstance(device_ids, str) else tuple(device_ids))

    def as_dict(self) -> dict:
        return {"name": self.name, "backend": self.backend, "precision": self.precision,
                "preprocess": self.preprocess.as_dict(), "batch_sizes": list(self.batch_sizes),
                "runs_in": self.runs_in}

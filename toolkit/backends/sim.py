"""A simulated card: proves the host side keeps a device fed where no device is.

Each simulated device takes one batch at a time and holds it for the device's published latency at
that batch size (batch / published images/s); it then returns real CenterFace outputs, computed once
on the CPU for a few real images (`convert`) and reused, so post-processing does real work. The
predictions are therefore not the images' own: a simulation measures speed, never accuracy, and
every output that carries its figures says SIMULATED.

The same device with no wait is the host-feed probe of `bench --capacity`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import fileio, reading, schema
from toolkit.backends.base import Backend, Runner, RunnerInfo, Simulation, batch_hw
from toolkit.backends.pool import chosen_devices, pool_over
from toolkit.data.preprocess import NCHW_F32, NHWC_U8
from toolkit.errors import InputError
from toolkit.model.signature import OUTPUT_NAMES, OUTPUT_STRIDE
from toolkit.target import Target

REFERENCE_IMAGES = 4  # real images whose outputs every simulated batch reuses
LABEL = "SIMULATED"


@dataclass(frozen=True)
class SimSettings:
    """A target file's [sim] table."""

    device: str  # what one simulated device stands for, e.g. "Ascend 310 chip"
    chips: int  # the devices `--device-ids all` means (a card's chips)
    rates: dict[int, float]  # published images/s of one device, by batch size
    source: str  # where the rates were published
    layout: str = NCHW_F32  # what the device takes: float32 NCHW, or uint8 NHWC (AIPP)

    @classmethod
    def of(cls, target: Target) -> SimSettings:
        raw = target.extra.get("sim", {})
        where = f"target {target.name}"
        try:
            rates = {int(bs): float(rate) for bs, rate in raw["rates"].items()}
            settings = cls(str(raw["device"]), int(raw.get("chips", 1)), rates, str(raw["source"]),
                           str(raw.get("layout", NCHW_F32)))
        except KeyError as exc:
            raise InputError(f"{where}: [sim] needs {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError):
            raise InputError(f"{where}: [sim] rates are {{batch = images per second}}, chips a number") from None
        if not rates or min(rates) < 1 or min(rates.values()) <= 0 or settings.chips < 1:
            raise InputError(f"{where}: [sim] rates need batch sizes >= 1 with positive rates, chips >= 1")
        if settings.layout not in (NCHW_F32, NHWC_U8):
            raise InputError(f"{where}: [sim] layout {settings.layout!r} is not one of {NCHW_F32}, {NHWC_U8}")
        return settings

    def rate(self, batch: int) -> float:
        """One device's images/s at `batch`: the published figure, linear between published batch sizes,
        the nearest one outside them."""
        sizes = sorted(self.rates)
        return float(np.interp(batch, sizes, [self.rates[s] for s in sizes]))

    def latency(self, batch: int) -> float:
        """Seconds one device holds a batch."""
        return batch / self.rate(batch)

    def as_dict(self, devices: int) -> dict:
        return {"label": LABEL, "device": self.device, "devices": devices, "published_rates": self.rates,
                "source": self.source, "note": "simulated devices: the published latency is waited, outputs are "
                "reused from real images; speed of the host side only, no accuracy"}


def spread(items: list, n: int = REFERENCE_IMAGES) -> list:
    """`n` items evenly spread over `items` (WIDER is sorted by event: the first few are all crowds)."""
    return [items[i * len(items) // n] for i in range(min(n, len(items)))]


def reference_images() -> list[Path]:
    """Real WIDER images beside the project, spread over its events, else the sample portrait every
    install has."""
    from toolkit.data.wider import list_val_images
    from toolkit.paths import default_dataset, sample_image

    root = default_dataset()
    if root is not None:
        return [path for _, path in spread(list_val_images(root))]
    return [sample_image()]


def reference_outputs(onnx_path: Path, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The model's real outputs for uint8 HWC `images` of one size, run on this CPU."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.data.preprocess import into_batch

    with OnnxRuntimeRunner(onnx_path) as runner:
        return runner.infer(into_batch(images, NCHW_F32))


Outputs = dict[str, np.ndarray]  # heatmap, scale, offset, landmarks of a few images at one input size


class SimDevice(Runner):
    """One simulated device: waits `latency(batch)`, returns reused real outputs of the batch's size."""

    def __init__(self, outputs: dict[tuple[int, int], Outputs], latency: Callable[[int], float], layout: str,
                 name: str) -> None:
        self.outputs, self.latency, self.name = outputs, latency, name  # by (height, width)
        self.source = name
        self.info = RunnerInfo(layout, next(iter(outputs)) if len(outputs) == 1 else None)
        self._batches: dict[tuple[int, int, int], Outputs] = {}

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        if batch_hw(batch, self.info.layout) not in self.outputs:
            raise InputError(f"{self.name}: input {batch_hw(batch, self.info.layout)} (HxW) is none of its sizes")

    def _batch_outputs(self, n: int, hw: tuple[int, int]) -> Outputs:
        """The reference outputs repeated to `n` (made once per batch size; read-only, shared)."""
        if (n, *hw) not in self._batches:
            reference = self.outputs[hw]
            take = np.arange(n) % len(reference["heatmap"])
            made = {name: np.ascontiguousarray(out[take]) for name, out in reference.items()}
            for array in made.values():
                array.flags.writeable = False
            self._batches[(n, *hw)] = made
        return self._batches[(n, *hw)]

    def _infer(self, batch: np.ndarray) -> Outputs:
        wait = self.latency(len(batch))
        if wait > 0:
            time.sleep(wait)
        return self._batch_outputs(len(batch), batch_hw(batch, self.info.layout))


def instant(outputs: dict[tuple[int, int], Outputs], layout: str, streams: int) -> Runner:
    """`streams` devices that return at once: the host-feed probe (`bench --capacity`)."""
    return pool_over(list(range(streams)), lambda _: SimDevice(outputs, lambda n: 0.0, layout, "instant device"),
                     "instant device")


class SimBackend(Backend):
    name = "sim"
    section_schema = {"device": schema.TEXT, "chips": schema.whole(1), "rates": schema.RATES, "source": schema.TEXT,
                      "layout": schema.TEXT}

    def unavailable(self) -> str | None:
        return None

    def version(self) -> str | None:
        return LABEL.lower()

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """The real outputs of a few real images at the target's input size (the simulated devices'
        answers), with the images' names."""
        from toolkit.data.images import read_rgb

        if len(target.input_sizes("a simulated device has one input size")) != 1:
            raise InputError(f"target {target.name}: a simulated device has one input size (letterbox)")
        paths = reference_images()
        outputs = reference_outputs(onnx_path, [target.preprocess.image_u8(read_rgb(p))[0] for p in paths])
        out = workdir / f"centerface.{target.name}.sim.npz"
        return fileio.write_with(out, lambda tmp: np.savez(tmp, images=np.array([p.name for p in paths]), **outputs))

    def runner(self, artefact: Path, target: Target) -> Runner:
        settings = SimSettings.of(target)
        reference = reading.npz(artefact, list(OUTPUT_NAMES), "simulated device's outputs")
        height, width = (d * OUTPUT_STRIDE for d in reference["heatmap"].shape[2:])
        outputs = {(height, width): reference}
        return pool_over(_ids(target, settings), lambda _: SimDevice(outputs, settings.latency, settings.layout,
                                                                     f"{LABEL} {settings.device}"),
                         "simulated")

    @property
    def simulation(self) -> Simulation:
        return Simulation(_described, _rate)


def _described(target: Target) -> dict:
    settings = SimSettings.of(target)
    return settings.as_dict(len(_ids(target, settings)))


def _rate(target: Target, batch: int) -> float:
    settings = SimSettings.of(target)
    return round(len(_ids(target, settings)) * settings.rate(batch), 2)


def _ids(target: Target, settings: SimSettings) -> list[int]:
    return chosen_devices(target, 0, lambda: list(range(settings.chips)), "simulated device")

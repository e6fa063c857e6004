"""The contract every backend meets (after mmdeploy's backend manager and Polygraphy's runners).

It depends on nothing above it: the chain, the quantisation flow and the CLI call backends, never the
other way round.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.data.preprocess import NCHW_F32, NHWC_U8, batch_dtype
from toolkit.errors import InputError, Unavailable
from toolkit.model.signature import check_outputs
from toolkit.schema import Field
from toolkit.calibration import CalibrationSet, configs_for
from toolkit.target import Target


@dataclass
class Step:
    """One step of a target's plan: its exact command line (None: done by the toolkit in Python) and
    the files it writes. `run --dry-run` prints these; the backend runs the same commands."""

    title: str
    command: list[str] | None
    writes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        return shlex.join(self.command) if self.command else "(toolkit, in Python)"


@dataclass(frozen=True)
class Check:
    """One line of `doctor`: what was looked for, whether it is here, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ToolFigures:
    """A vendor tool's own throughput for one batch size, the same record for every backend: the
    device figure (a card's: chip x chips) and how it was made."""

    tool: str
    images_per_s: float  # the whole device (a card of `chips`)
    chips: int = 1
    chip_images_per_s: float | None = None
    details: dict = field(default_factory=dict)  # the tool's own figures (latency, H2D, command line)

    def as_dict(self) -> dict:
        return {"tool": self.tool, "images_per_s": self.images_per_s, "chips": self.chips,
                "chip_images_per_s": self.chip_images_per_s if self.chip_images_per_s is not None else self.images_per_s,
                **self.details}


def _as_it_is(out: Path, target: Target) -> Callable[[Runner], Runner] | None:
    return None


@dataclass(frozen=True)
class Emulation:
    """A capability of device backends: the target's deployed numerics (precision, quantisation scheme) on
    this CPU (--mode emulate), run by the emulation backend (backends/emulated.py)."""

    # (onnx_path, target, calib, out, log) -> the ONNX model(s) ONNX Runtime runs, one per input size, and a
    # record of the method and of what differs from the device; `calib` is the target's set for INT8 targets
    make: Callable[[Path, Target, CalibrationSet | None, Path, Callable[[str], None]], tuple[list[Path], dict]]
    # (out, target) -> a wrapper around the emulated model's runner where the device is not fed float NCHW
    # (AIPP's uint8 HWC), from the files `make` wrote in `out`; None: fed as it is
    feed: Callable[[Path, Target], Callable[[Runner], Runner] | None] = _as_it_is


@dataclass(frozen=True)
class Simulation:
    """A capability of simulated devices: what they stand for (labelled SIMULATED wherever shown) and their
    combined images/s at a batch size."""

    describe: Callable[[Target], dict]
    rate: Callable[[Target, int], float]


def batch_hw(batch: np.ndarray, layout: str) -> tuple[int, int]:
    """(height, width) of a batch in `layout`."""
    return tuple(batch.shape[1:3]) if layout == NHWC_U8 else tuple(batch.shape[2:4])


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner takes and how it runs: the one record the pipeline, the input check and the wrappers read.
    A batch is `layout` (float32 NCHW 0..255, or the uint8 NHWC an AIPP model takes: its dtype and channel
    position follow), at `input_size` (height, width; None: any), of `batch` images (smallest, largest;
    largest None: any). `streams`: concurrent infer() calls it is built for (devices, or CPU streams);
    `host_cores`: cores its inference keeps busy on this host (the pipeline's workers get the rest)."""

    layout: str = NCHW_F32
    input_size: tuple[int, int] | None = None
    batch: tuple[int, int | None] = (1, None)
    streams: int = 1
    host_cores: int = 0

    def __post_init__(self) -> None:
        low, high = self.batch
        if self.layout not in (NCHW_F32, NHWC_U8) or self.streams < 1 or self.host_cores < 0 or low < 1 \
                or (high is not None and high < low):
            raise ValueError(f"not a runner's record: {self}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(batch_dtype(self.layout))

    @property
    def channels_last(self) -> bool:
        return self.layout == NHWC_U8

    @staticmethod
    def of_children(children: list[Runner], each_stream: bool, layout: str | None = None) -> RunnerInfo:
        """A wrapper's record from its children's. `each_stream`: every child serves batches at once (a device
        pool: streams and host cores add up), else one child serves a batch (one per input size: the
        most of any). The children must agree on the layout; the wrapper takes batches of the sizes they
        take (none fixed, where their fixed sizes differ) and the batch sizes every child takes. `layout`:
        the wrapper's own where it converts (AIPP's uint8 NHWC in front of float NCHW); the input size is
        then the children's to check, after the conversion."""
        infos = [c.info for c in children]
        layouts = {i.layout for i in infos}
        if len(layouts) != 1:
            raise InputError(f"{', '.join(c.source or c.name for c in children)}: runners of different layouts "
                             f"({', '.join(sorted(layouts))}) cannot be wrapped as one")
        sizes = {i.input_size for i in infos}
        highs = [i.batch[1] for i in infos if i.batch[1] is not None]
        combine = sum if each_stream else max
        return RunnerInfo(layout or layouts.pop(), sizes.pop() if len(sizes) == 1 and layout is None else None,
                          (max(i.batch[0] for i in infos), min(highs) if highs else None),
                          combine(i.streams for i in infos), combine(i.host_cores for i in infos))


class Runner(ABC):
    """Runs a converted model; a context manager so sessions and devices are released.

    `infer` checks every batch against what the model takes (`info`, the runner's one record of it) and
    every output against CenterFace's shapes, then the backend's `_infer` does the work. `close` may be
    called more than once.
    """

    name: str = "runner"  # the runtime, as reports label it
    source: str = ""  # what it runs (the model file), as errors name it
    info: RunnerInfo = RunnerInfo()
    _closed = False

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A batch in `layout` -> outputs named heatmap, scale, offset, landmarks. The runner keeps no
        reference to `batch` once it returns (the pipeline reuses its buffers)."""
        self.check_input(batch)
        outputs = self._infer(batch)
        check_outputs(outputs, (len(batch), 3, *batch_hw(batch, self.info.layout)), self.source or self.name)
        return outputs

    def empty_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        """A host buffer for batches of `shape` in its layout (a runner may offer pinned memory)."""
        return np.empty(shape, self.info.dtype)

    def reported(self) -> dict:
        """What the runtime reports of itself once compiled (the precision in force, its infer requests),
        recorded in result.json as `runtime`; {} when it reports nothing beyond `info`."""
        return {}

    def devices(self) -> list[dict]:
        """Per device (chip, GPU, CPU stream): its label, images and busy seconds so far; [] when the
        runner does not count them."""
        return []

    def check_input(self, batch: np.ndarray) -> None:
        where, shape, info = self.source or self.name, tuple(batch.shape), self.info
        channels = batch.shape[3] if info.channels_last else batch.shape[1] if batch.ndim > 1 else None
        if batch.dtype != info.dtype or batch.ndim != 4 or channels != 3:
            expected = "N x H x W x 3" if info.channels_last else "N x 3 x H x W"
            raise InputError(f"{where}: expected a {info.dtype} {expected} batch, got {batch.dtype} {shape}")
        low, high = info.batch
        if low == high and len(batch) != low:
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes exactly {low}")
        if high is not None and len(batch) > high:
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes at most {high}")
        if len(batch) < low:
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes at least {low}")
        if info.input_size is not None and batch_hw(batch, info.layout) != tuple(info.input_size):
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes "
                             f"{info.input_size[0]}x{info.input_size[1]} (HxW)")

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The backend's inference on a checked batch."""

    def close(self) -> None:
        """Release what the runner holds (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Free sessions, buffers, devices. Must cope with a constructor that stopped half-way."""


class Backend(ABC):
    name: str
    section_schema: dict[str, Field] = {}  # what its own [<name>] table in a target file may hold
    # INT8, by capability: methods the toolkit's sweep tries through `calibrate` (each measured, the best
    # kept), or the name of the vendor's own quantiser that `quantise` runs. Neither: no INT8 here.
    sweep_methods: tuple[str, ...] = ()
    own_quantiser: str | None = None
    accelerator: str | None = None  # the Ray resource one of its devices is ("GPU", "NPU"); None: CPUs only
    triton_platform: str | None = None  # the Triton platform that serves its deployed model (export --format triton)
    # Optional capabilities, carried only by the backends that have them:
    emulation: Emulation | None = None  # its device numerics on this CPU (--mode emulate)
    simulation: Simulation | None = None  # simulated devices (speed only, never an AP)

    @property
    def int8(self) -> bool:
        return bool(self.sweep_methods or self.own_quantiser)

    @abstractmethod
    def unavailable(self) -> str | None:
        """None when it can run here, else the reason in one line."""

    def unavailable_for(self, target: Target) -> str | None:
        """None when `target` can run here, else why not (a backend may need more for some targets: a CPU
        feature for a precision); by default, whether the backend can run here at all."""
        return self.unavailable()

    def unavailable_for_int8(self) -> str | None:
        """None when INT8 calibration can run here (the quantiser's tools too), else why not."""
        return self.unavailable()

    @abstractmethod
    def version(self) -> str | None:
        """The SDK / runtime version, or None when missing."""

    def checks(self) -> list[Check]:
        """What `doctor` shows for this backend: its SDK, tools and devices."""
        reason = self.unavailable()
        return [Check(f"backend {self.name}", reason is None, reason or f"version {self.version()}")]

    @abstractmethod
    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """Turn the exported ONNX into this backend's artefact inside `workdir`, and return the file `runner`
        opens; an artefact of several files (a model per input size, weights beside a graph) has them beside
        it in `workdir`. `workdir` may be a staged copy whose files are hard links to the run folder's: replace
        a file (write a new one, rename it over), never edit one in place."""

    def calibrate(self, onnx_path: Path, calib: CalibrationSet, target: Target, out: Path,
                  method: str, keep_float: list[str]) -> Path:
        """One of `sweep_methods`: quantise `onnx_path` with the calibration set into `out`."""
        raise Unavailable(f"backend {self.name}: no INT8 calibration method {method!r}")

    def quantise(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
        """The vendor's own quantiser (`own_quantiser`): the INT8 artefact and a summary of its
        calibration. A summary may name an `onnx_twin`: an ONNX model (relative to `out`) with the
        quantised numerics, which ONNX Runtime can evaluate where the device is missing."""
        raise Unavailable(f"backend {self.name}: no INT8 quantiser")

    def float_setting(self, names: list[str]) -> dict:
        """The [calibration] lines that leave the nodes `names` unquantised, in this backend's terms (the sweep's
        `keep_float`: one variant)."""
        return {"keep_float": [list(names)]}

    def qdq_twin(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path) -> Path:
        """A Q/DQ ONNX model of every layer the backend quantises, with its INT8 scheme and FP32 elsewhere, in `out`:
        what the sensitivity per layer compares with the float model (the sweep's first method)."""
        method = configs_for(target)[0].method
        return self.calibrate(onnx_path, calib, target, out / "centerface.int8.twin.onnx", method, [])

    def quantise_holding(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path, names: list[str],
                         log: Callable[[str], None]) -> tuple[Path, Target]:
        """The INT8 artefact in `out` with the nodes `names` left in float, by the backend's own means (the sweep's
        first method, or the vendor's quantiser), and the target its runner opens it as."""
        held = target.with_extra("calibration", {**target.extra["calibration"], **self.float_setting(names)})
        if self.sweep_methods:
            method = configs_for(target)[0].method
            return self.calibrate(onnx_path, calib, held, out / "centerface.int8.onnx", method, names), held
        return self.quantise(onnx_path, held, calib, out, log)[0], held

    @abstractmethod
    def runner(self, artefact: Path, target: Target) -> Runner:
        """A runner for an artefact `convert` made."""

    def deployed_model(self, out: Path, target: Target) -> Path | None:
        """The model file in `out` that the vendor tool compiles, where the backend writes one (TensorRT's
        typed ONNX): result.json records its sha256 in every mode, and an emulation evaluates that file."""
        return None

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict[str, ToolFigures] | None:
        """The vendor tool's own throughput for the converted models, per batch size, measured on `items`
        where the tool needs real inputs (None: this backend has no such tool)."""
        return None

    def dry_run(self, target: Target, out: Path, shown: Path | None = None) -> list[Step]:
        """The plan, without running anything; it may write the small config files the plan names into
        `out`. Paths in the steps are under `shown` (the run folder as the container sees it) or `out`."""
        out = shown or out
        onnx = out / "centerface.onnx"
        return [Step("export (PyTorch)", None, [str(out / "centerface.pth"), str(onnx)]),
                Step(f"convert ({self.name}{', INT8 calibration' if target.precision == 'int8' else ''})", None,
                     [str(out / "<converted model>")]),
                Step("inference, WIDER FACE AP", None, [str(out / "predictions"), str(out / "result.json")])]

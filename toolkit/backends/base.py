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
from typing import TYPE_CHECKING

import numpy as np

from toolkit.data.preprocess import NCHW_F32, NHWC_U8, batch_dtype
from toolkit.errors import InputError, Unavailable
from toolkit.model.signature import check_outputs
from toolkit.schema import Field

if TYPE_CHECKING:
    from toolkit.calibration import CalibrationSet
    from toolkit.targets import Target


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


def batch_hw(batch: np.ndarray, layout: str) -> tuple[int, int]:
    """(height, width) of a batch in `layout`."""
    return tuple(batch.shape[1:3]) if layout == NHWC_U8 else tuple(batch.shape[2:4])


class Runner(ABC):
    """Runs a converted model; a context manager so sessions and devices are released.

    `infer` checks every batch against what the model takes (`layout`: float32 NCHW 0..255, or the
    uint8 NHWC images an AIPP model takes; the model's fixed size and largest batch where it has them)
    and every output against CenterFace's shapes, then the backend's `_infer` does the work. `close`
    may be called more than once.
    """

    name: str = "runner"  # the runtime, as reports label it
    source: str = ""  # what it runs (the model file), as errors name it
    streams: int = 1  # concurrent infer() calls the runner is built for (devices, or CPU streams)
    host_cores: int = 0  # cores its inference keeps busy on this host (the pipeline's workers get the rest)
    layout: str = NCHW_F32
    max_batch: int | None = None  # the largest batch it takes (smaller ones padded); None: any
    fixed_batch: int | None = None  # the one batch a static model takes; None: any
    input_size: tuple[int, int] | None = None  # (height, width) a fixed-shape model takes; None: any
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
        check_outputs(outputs, (len(batch), 3, *batch_hw(batch, self.layout)), self.source or self.name)
        return outputs

    def empty_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        """A host buffer for batches of `shape` in `layout` (a runner may offer pinned memory)."""
        return np.empty(shape, batch_dtype(self.layout))

    def devices(self) -> list[dict]:
        """Per device (chip, GPU, CPU stream): its label, images and busy seconds so far; [] when the
        runner does not count them."""
        return []

    def check_input(self, batch: np.ndarray) -> None:
        where, shape = self.source or self.name, tuple(batch.shape)
        if self.layout == NHWC_U8:
            if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
                raise InputError(f"{where}: expected a uint8 N x H x W x 3 batch, got {batch.dtype} {shape}")
        elif batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1] != 3:
            raise InputError(f"{where}: expected a float32 N x 3 x H x W batch, got {batch.dtype} {shape}")
        n = batch.shape[0]
        if self.fixed_batch is not None and n != self.fixed_batch:
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes exactly {self.fixed_batch}")
        if self.max_batch is not None and n > self.max_batch:
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes at most {self.max_batch}")
        if self.input_size is not None and batch_hw(batch, self.layout) != tuple(self.input_size):
            raise InputError(f"{where}: a batch of shape {shape} does not fit the model's: it takes "
                             f"{self.input_size[0]}x{self.input_size[1]} (HxW)")

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

    @property
    def int8(self) -> bool:
        return bool(self.sweep_methods or self.own_quantiser)

    @property
    def can_emulate(self) -> bool:
        """Whether `emulate` reproduces this backend's device numerics on the CPU."""
        return type(self).emulate is not Backend.emulate

    @abstractmethod
    def unavailable(self) -> str | None:
        """None when it can run here, else the reason in one line."""

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
        """Turn the exported ONNX into this backend's artefact inside `workdir`."""

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

    @abstractmethod
    def runner(self, artefact: Path, target: Target) -> Runner:
        """A runner for an artefact `convert` made."""

    def emulate(self, onnx_path: Path, target: Target, calib: CalibrationSet | None, out: Path,
                log: Callable[[str], None]) -> tuple[list[Path], dict]:
        """The target's deployed numerics (precision, quantisation scheme) as ONNX model(s) that ONNX
        Runtime runs on the CPU, one per input size, and a record of the method and of what differs from
        the device. `calib` is the target's calibration set for INT8 targets."""
        raise Unavailable(f"target {target.name}: backend {self.name} runs on this machine as it is; "
                          "there is nothing to emulate (use --mode host)")

    def deployed_model(self, out: Path, target: Target) -> Path | None:
        """The model file in `out` that the vendor tool compiles, where the backend writes one (TensorRT's
        typed ONNX): result.json records its sha256 in every mode, and an emulation evaluates that file."""
        return None

    def emulated_input(self, out: Path, target: Target) -> Callable[[Runner], Runner] | None:
        """How an emulation is fed where the device is not fed float NCHW (AIPP's uint8 HWC): a wrapper
        around the emulated model's runner, from the files `emulate` wrote in `out`; None: as it is."""
        return None

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict[str, ToolFigures] | None:
        """The vendor tool's own throughput for the converted models, per batch size, measured on `items`
        where the tool needs real inputs (None: this backend has no such tool)."""
        return None

    def simulation(self, target: Target) -> dict | None:
        """What a simulated device stands for (labelled SIMULATED wherever shown); None: a real one."""
        return None

    def simulated_rate(self, target: Target, batch: int) -> float | None:
        """The simulated devices' combined images/s at `batch`; None: a real device."""
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

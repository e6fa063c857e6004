"""The contract every backend meets (after mmdeploy's backend manager and Polygraphy's runners)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit.errors import Unavailable

if TYPE_CHECKING:
    from toolkit.calibration import CalibrationSet
    from toolkit.targets import Target


class Runner(ABC):
    """Runs a converted model; a context manager so sessions and devices are released."""

    name: str = "runner"
    streams: int = 1  # concurrent infer() calls the runner is built for (the pipeline uses them all)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the runner holds."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """float32 NCHW batch -> outputs named heatmap, scale, offset, landmarks."""


class Backend(ABC):
    name: str
    calibration_methods: tuple[str, ...] = ()  # what `calibrate` accepts; empty: no INT8

    @abstractmethod
    def unavailable(self) -> str | None:
        """None when it can run here, else the reason in one line."""

    @abstractmethod
    def version(self) -> str | None:
        """The SDK / runtime version, or None when missing."""

    @abstractmethod
    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """Turn the exported ONNX into this backend's artefact inside `workdir`."""

    def calibrate(self, onnx_path: Path, calib: CalibrationSet, target: Target, out: Path,
                  method: str, keep_float: list[str]) -> Path:
        """Quantise `onnx_path` to INT8 with the calibration set; write `out` (this backend's format)."""
        raise Unavailable(f"backend {self.name}: no INT8 calibration")

    @abstractmethod
    def runner(self, artefact: Path, target: Target) -> Runner:
        """A runner for an artefact `convert` made."""

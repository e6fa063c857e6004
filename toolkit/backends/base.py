"""The contract every backend meets (after mmdeploy's backend manager and Polygraphy's runners)."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit.errors import Unavailable

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

    def quantise(self, onnx_path: Path, target: Target, data_root: Path, gt, out: Path,
                 items: list[tuple[str, Path]], log: Callable[[str], None], progress=None) -> tuple[Path, dict]:
        """The INT8 artefact and a summary of its calibration. By default every configured method is
        tried on this machine, measured on `items` (images calibration did not use) and the best kept."""
        from toolkit import quantization

        path, report = quantization.best_model(target, onnx_path, data_root, gt, out, items, log, progress)
        return path, {"best": report["best"], "set_sha256": report["calibration_sha256"],
                      "images": len(report["calibration_images"]), "excluded_from_evaluation": True,
                      "report": f"{quantization.REPORT}.json"}

    @abstractmethod
    def runner(self, artefact: Path, target: Target) -> Runner:
        """A runner for an artefact `convert` made."""

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict | None:
        """The vendor tool's own throughput figures for the converted models, per batch size, measured
        on `items` where the tool needs real inputs (None: this backend has no such tool)."""
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

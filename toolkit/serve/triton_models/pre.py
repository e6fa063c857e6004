"""Triton Python-backend model `centerface_pre` (copied into the repository as its model.py): a decoded RGB image
(uint8 H x W x 3) letterboxed to the engine's input as the toolkit letterboxes it (CenterNet's affine: centred,
scaled by the longer side, zero padding, bilinear), float32 3 x H x W 0..255, and the transform that maps boxes
back. NumPy only: Triton's Python backend has it, and nothing else is needed."""

import json

import numpy as np


def letterbox(rgb: np.ndarray, width: int, height: int) -> tuple:
    """(float32 3 x height x width, [sx, sy, tx, ty, image width, image height])."""
    h, w = rgb.shape[:2]
    k = min(width / w, height / h)
    tx, ty = width / 2 - k * w / 2, height / 2 - k * h / 2
    xs, ys = (np.arange(width) - tx) / k, (np.arange(height) - ty) / k  # each output pixel's source position
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0).astype(np.float32), (ys - y0).astype(np.float32)
    padded = np.zeros((h + 2, w + 2, 3), np.float32)  # a zero border: what lies outside the image is 0
    padded[1:-1, 1:-1] = rgb
    cols = [np.clip(x0 + d + 1, 0, w + 1) for d in (0, 1)]
    rows = [np.clip(y0 + d + 1, 0, h + 1) for d in (0, 1)]
    top = padded[rows[0]][:, cols[0]] * (1 - fx)[None, :, None] + padded[rows[0]][:, cols[1]] * fx[None, :, None]
    bottom = padded[rows[1]][:, cols[0]] * (1 - fx)[None, :, None] + padded[rows[1]][:, cols[1]] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]
    return np.ascontiguousarray(out.transpose(2, 0, 1)), np.array([k, k, tx, ty, w, h], np.float32)


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.width = int(parameters["WIDTH"]["string_value"])
        self.height = int(parameters["HEIGHT"]["string_value"])

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            made = [letterbox(image, self.width, self.height) for image in images]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("INPUT", np.stack([m[0] for m in made])),
                pb_utils.Tensor("TRANSFORM", np.stack([m[1] for m in made]))]))
        return responses

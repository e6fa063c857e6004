"""Triton Python-backend model `centerface_post` (copied into the repository as its model.py): the engine's four
outputs decoded as the toolkit decodes them (CenterFace's official decode, NMS at IoU 0.3, boxes and landmarks
mapped back through the letterbox's transform), as FACES: float32 N x 15 (x1 y1 x2 y2 score, then the five
landmarks' x y). NumPy only."""

import json

import numpy as np

STRIDE = 4


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS, highest score first (ties in input order): the kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(area[best] + area[rest] - inter, 1e-12) <= iou]
    return np.array(keep, np.int64)


def decode(heatmap, scale, offset, landmarks, transform, threshold: float, nms_iou: float) -> np.ndarray:
    """One image's outputs (C x h x w each) and its transform -> FACES (N x 15), in the image's own pixels."""
    ys, xs = np.nonzero(heatmap[0] > threshold)
    if len(ys) == 0:
        return np.zeros((0, 15), np.float32)
    score = heatmap[0, ys, xs]
    s0, s1 = np.exp(scale[0, ys, xs]) * STRIDE, np.exp(scale[1, ys, xs]) * STRIDE
    y1 = np.maximum(0.0, (ys + offset[0, ys, xs] + 0.5) * STRIDE - s0 / 2)
    x1 = np.maximum(0.0, (xs + offset[1, ys, xs] + 0.5) * STRIDE - s1 / 2)
    boxes = np.stack([x1, y1, x1 + s1, y1 + s0], axis=1)
    lm = landmarks[:, ys, xs].T
    marks = np.empty_like(lm)
    marks[:, 0::2] = lm[:, 1::2] * s1[:, None] + x1[:, None]
    marks[:, 1::2] = lm[:, 0::2] * s0[:, None] + y1[:, None]
    keep = nms(boxes.astype(np.float32), score.astype(np.float32), nms_iou)
    sx, sy, tx, ty, width, height = (float(v) for v in transform)
    boxes, marks = boxes[keep], marks[keep]
    boxes[:, 0::2] = np.clip((boxes[:, 0::2] - tx) / sx, 0, width)
    boxes[:, 1::2] = np.clip((boxes[:, 1::2] - ty) / sy, 0, height)
    marks[:, 0::2], marks[:, 1::2] = (marks[:, 0::2] - tx) / sx, (marks[:, 1::2] - ty) / sy
    return np.concatenate([boxes, score[keep, None], marks], axis=1).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.threshold = float(parameters["THRESHOLD"]["string_value"])
        self.nms_iou = float(parameters["NMS_IOU"]["string_value"])

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        names = ("heatmap", "scale", "offset", "landmarks", "TRANSFORM")
        responses = []
        for request in requests:
            tensors = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in names]
            faces = [decode(*(t[i] for t in tensors), self.threshold, self.nms_iou) for i in range(len(tensors[0]))]
            most = max((len(f) for f in faces), default=0)  # a batch's images padded to its most faces with zeros
            padded = np.zeros((len(faces), most, 15), np.float32)
            for i, f in enumerate(faces):
                padded[i, :len(f)] = f
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("FACES", padded)]))
        return responses

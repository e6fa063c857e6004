"""Decode, NMS and the WIDER prediction format on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.data.preprocess import Preprocess
from toolkit.postprocess import Detections, decode, nms, wider_lines


def outputs(h: int = 16, w: int = 16):
    return (np.zeros((1, h, w), np.float32), np.zeros((2, h, w), np.float32),
            np.zeros((2, h, w), np.float32), np.zeros((10, h, w), np.float32))


def test_single_peak_decodes_to_the_official_box() -> None:
    heat, scale, off, lm = outputs()
    heat[0, 5, 3] = 0.9  # row 5 (y), column 3 (x)
    scale[:, 5, 3] = [np.log(4.0), np.log(2.0)]  # height 16 px, width 8 px
    off[:, 5, 3] = [0.25, 0.5]  # y, x
    lm[:, 5, 3] = [0.5, 0.5] * 5  # landmark at the box centre
    identity = Preprocess("native").transform(64, 64)
    det = decode(heat, scale, off, lm, identity, threshold=0.5)
    cx, cy = (3 + 0.5 + 0.5) * 4, (5 + 0.25 + 0.5) * 4  # 16, 23
    np.testing.assert_allclose(det.boxes[0], [cx - 4, cy - 8, cx + 4, cy + 8], atol=1e-5)
    np.testing.assert_allclose(det.scores, [0.9])
    np.testing.assert_allclose(det.landmarks[0], [cx, cy] * 5, atol=1e-5)


def test_threshold_and_top_left_clip() -> None:
    heat, scale, off, lm = outputs()
    heat[0, 0, 0], heat[0, 15, 15] = 0.6, 0.04
    scale[:, 0, 0] = np.log(4.0)  # 16x16 box centred at (2, 2): clipped at 0
    det = decode(heat, scale, off, lm, Preprocess("native").transform(64, 64), threshold=0.05)
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], [0, 0, 16, 16], atol=1e-5)


def test_letterbox_inverse_maps_to_original_pixels() -> None:
    pre = Preprocess("letterbox", 800, 800)
    t = pre.transform(1600, 800)  # k = 0.5, padded 200 px top and bottom
    heat, scale, off, lm = outputs(200, 200)
    heat[0, 100, 100] = 0.9  # input centre (402, 402) -> original (804, 404)
    scale[:, 100, 100] = np.log(10.0)  # 40 px in the input, 80 px in the original
    det = decode(heat, scale, off, lm, t, threshold=0.5)
    np.testing.assert_allclose(det.boxes[0], [764, 364, 844, 444], atol=1e-4)


def test_boxes_are_clipped_to_the_original_image() -> None:
    heat, scale, off, lm = outputs()
    heat[0, 15, 15] = 0.9
    scale[:, 15, 15] = np.log(8.0)
    det = decode(heat, scale, off, lm, Preprocess("native").transform(64, 64), threshold=0.5)
    assert det.boxes[0, 2] == 64 and det.boxes[0, 3] == 64


def test_nms_keeps_the_best_of_each_cluster() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.7], np.float32)
    # IoU(1, 0) = 81/119 = 0.68 -> drop 0; IoU(1, 3) = 36/(100+50-36) = 0.32 >= 0.3 -> drop 3.
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(boxes, scores, 0.35).tolist() == [1, 3, 2]
    assert nms(boxes[:0], scores[:0], 0.3).tolist() == []


def test_wider_lines_are_sorted_xywh() -> None:
    det = Detections(np.array([[10, 20, 30, 60], [0, 0, 5, 5]], np.float32), np.array([0.2, 0.9], np.float32),
                     np.zeros((2, 10), np.float32))
    assert wider_lines("img_1", det).splitlines() == [
        "img_1", "2", "0.00 0.00 5.00 5.00 0.900000", "10.00 20.00 20.00 40.00 0.200000"]
    assert wider_lines("none", Detections()) == "none\n0\n"


@pytest.mark.parametrize("threshold", [0.05, 0.5])
def test_no_detection_below_threshold(threshold: float) -> None:
    heat, scale, off, lm = outputs()
    heat[0, 2, 2] = threshold - 1e-3
    assert len(decode(heat, scale, off, lm, Preprocess("native").transform(64, 64), threshold)) == 0


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS stated plainly, one pair at a time."""
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
        ok = True
        for j in kept:
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(w, 0) * max(h, 0)
            union = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]) \
                + (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter
            if inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def test_nms_agrees_with_plain_greedy_on_real_candidates(net, wider_images) -> None:
    """Every candidate above 0.05 of real WIDER images (hundreds to thousands of boxes)."""
    from toolkit.data.images import read_rgb
    from toolkit.model.export import torch_outputs

    pre = Preprocess("letterbox", 800, 800)
    for path in wider_images[:3]:
        out = torch_outputs(net, pre(read_rgb(path))[0][None])
        heat = out["heatmap"][0, 0]
        ys, xs = np.nonzero(heat > 0.05)
        s0, s1 = np.exp(out["scale"][0, 0, ys, xs]) * 4, np.exp(out["scale"][0, 1, ys, xs]) * 4
        x1, y1 = (xs + 0.5) * 4 - s1 / 2, (ys + 0.5) * 4 - s0 / 2
        boxes = np.stack([x1, y1, x1 + s1, y1 + s0], 1).astype(np.float32)
        scores = heat[ys, xs]
        assert len(scores) > 100
        assert nms(boxes, scores, 0.3).tolist() == greedy_nms(boxes, scores, 0.3)


def test_models_the_toolkit_writes_load_in_older_runtimes(cpu_run) -> None:
    """IR version 8 at most (opset 17's): Python 3.10 vendor images carry ONNX Runtime 1.23 (IR <= 11)
    and older CANN / TensorRT parsers, whatever IR the newest onnx package would write."""
    import onnx

    from toolkit.postprocess import nms_model

    assert nms_model().ir_version <= 8
    assert onnx.load(str(cpu_run / "centerface.onnx")).ir_version <= 8

"""Both preprocessing modes and the maps back to the original image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError


def centernet_affine(w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
    """The CenterNet construction: centre (w/2, h/2), scale max(h, w), three point pairs."""
    c = np.array([w / 2, h / 2], np.float32)
    s = max(h, w)
    src = np.array([c, c + [0, -s / 2], c + [-s / 2, -s / 2]], np.float32)
    dst = np.array([[out_w / 2, out_h / 2], [out_w / 2, out_h / 2 - out_w / 2],
                    [0, out_h / 2 - out_w / 2]], np.float32)
    return cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize("w, h", [(1024, 683), (683, 1024), (800, 800), (1024, 1400)])
def test_letterbox_is_the_centernet_warp(w: int, h: int) -> None:
    t = Preprocess("letterbox", 800, 800).transform(w, h)
    np.testing.assert_allclose(t.matrix(), centernet_affine(w, h, 800, 800), atol=1e-3)


def test_letterbox_image_and_inverse(wider_images) -> None:
    rgb = read_rgb(wider_images[1])
    tensor, t = Preprocess("letterbox", 800, 800)(rgb)
    assert tensor.shape == (3, 800, 800) and tensor.dtype == np.float32
    assert tensor.max() > 200  # raw 0..255, not normalised
    h, w = rgb.shape[:2]
    corners = np.array([[0, 0, w, h]], np.float64)
    mapped = corners * [t.sx, t.sy, t.sx, t.sy] + [t.tx, t.ty, t.tx, t.ty]
    np.testing.assert_allclose(t.to_original(mapped), corners, atol=1e-9)
    # The padding is zero, the content is centred.
    if w > h:
        assert tensor[:, 0, :].max() == 0 and tensor[:, 399, :].max() > 0


def test_native_rounds_up_to_32(wider_images) -> None:
    rgb = read_rgb(wider_images[0])
    tensor, t = Preprocess("native")(rgb)
    h, w = rgb.shape[:2]
    assert tensor.shape == (3, -(-h // 32) * 32, -(-w // 32) * 32)
    assert (t.sx, t.sy) == (tensor.shape[2] / w, tensor.shape[1] / h)


@pytest.mark.parametrize("mode, size", [("letterbox", "801x800"), ("bilinear", None), ("letterbox", "big")])
def test_bad_preprocessing_is_refused(mode: str, size: str | None) -> None:
    with pytest.raises(InputError):
        Preprocess.parse(mode, size)

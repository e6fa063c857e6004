"""Every kind of image a user may hand over: converted when it is an image, a clear error when not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from toolkit.data.images import list_images, read_rgb
from toolkit.errors import InputError


@pytest.fixture(scope="module")
def photo(wider_images) -> Path:
    return wider_images[0]


def test_colour_jpeg_is_rgb(photo: Path) -> None:
    rgb = read_rgb(photo)
    bgr = cv2.imread(str(photo))
    assert rgb.dtype == np.uint8 and rgb.shape == bgr.shape
    assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_grayscale_rgba_and_16bit_are_converted(photo: Path, tmp_path: Path) -> None:
    bgr = cv2.imread(str(photo))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    out_gray = read_rgb(tmp_path / "gray.png")
    assert out_gray.shape == bgr.shape and np.array_equal(out_gray[..., 0], gray)
    assert np.array_equal(read_rgb(tmp_path / "rgba.png"), bgr[:, :, ::-1])
    assert np.array_equal(read_rgb(tmp_path / "deep.png"), bgr[:, :, ::-1])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda data: data[: len(data) // 2], "truncated JPEG"),
        (lambda data: b"\x00garbage" * 100, "not a readable image"),
        (lambda data: b"", "empty file"),
        (lambda data: data[:2] + bytes(200) + data[-2:], "not a readable image"),
    ],
    ids=["truncated", "garbage", "empty", "corrupt-header"],
)
def test_broken_files_name_the_file(photo: Path, tmp_path: Path, make, message: str) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(make(photo.read_bytes()))
    with pytest.raises(InputError, match=rf"broken\.jpg: {message}"):
        read_rgb(bad)


def test_truncated_png(photo: Path, tmp_path: Path) -> None:
    ok, png = cv2.imencode(".png", cv2.imread(str(photo)))
    bad = tmp_path / "cut.png"
    bad.write_bytes(png.tobytes()[:-5000])
    with pytest.raises(InputError, match=r"cut\.png: truncated PNG"):
        read_rgb(bad)


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.jpg: no such file"):
        read_rgb(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        list_images(tmp_path / "missing")


def test_jpegs_decode_straight_to_the_same_rgb(wider_images, tmp_path) -> None:
    """libjpeg-turbo writing RGB itself (no BGR -> RGB pass) gives the same pixels, grey JPEGs included."""
    import cv2
    import numpy as np

    from toolkit.data.images import read_rgb, to_rgb8

    grey = tmp_path / "grey.jpg"
    cv2.imwrite(str(grey), np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8))
    for path in [*wider_images[:20], grey]:
        slow = to_rgb8(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED))
        np.testing.assert_array_equal(read_rgb(path), slow)

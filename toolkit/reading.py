"""The checked reader: every file the toolkit reads comes through here, so a file that is not what it must
be is one line naming it and what is wrong (never a traceback, never a hang):

- not a regular file (a folder, a FIFO, a device, a socket): said before it is opened, and opened without
  blocking in case it changed in between;
- too large for what it is (a record of megabytes, an image file larger than memory): refused before reading;
- not UTF-8 text, not JSON, not TOML, JSON of another shape (`[]`, `null`, `"artefact": 7`): the file, the
  line or key, and what was expected.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit.errors import InputError

RECORD_LIMIT = 64 << 20  # JSON and TOML the toolkit reads (records, target files): far above any it writes
KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((word for test, word in KINDS if test(mode)), "not a regular file")


def regular_file(path: Path | str, what: str = "file") -> os.stat_result:
    """`path`'s status when it is a regular file (through links), else one line: missing, or what it is."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{path}: a link to {os.readlink(path)}, which does not exist") from None
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(found.st_mode):
        raise InputError(f"{path}: {kind(found.st_mode)}, not a regular {what}")
    return found


def folder(path: Path | str, what: str, hint: str | None = None) -> Path:
    """`path` when it is a folder (through links), else one line: missing, or what it is instead."""
    try:
        found = os.stat(path)
    except OSError:
        raise InputError(f"{path}: no such {what}", hint) from None
    if not stat.S_ISDIR(found.st_mode):
        raise InputError(f"{path}: {'a file' if stat.S_ISREG(found.st_mode) else kind(found.st_mode)}, not a folder "
                         f"(a {what})", hint)
    return Path(path)


def read_bytes(path: Path | str, limit: int | None = RECORD_LIMIT, what: str = "file") -> bytes:
    """A regular file's bytes, at most `limit` of them (None: any size)."""
    size = regular_file(path, what).st_size
    if limit is not None and size > limit:
        raise InputError(f"{path}: {size / 2**20:.1f} MiB, more than the {limit / 2**20:.0f} MiB a {what} may be here")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never waits for a writer, should it be a FIFO by now
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: {kind(os.fstat(fd).st_mode)}, not a regular {what}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)


def decode_text(path: Path | str, data: bytes) -> str:
    """UTF-8 text, or one line naming the line and the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def read_text(path: Path | str, limit: int | None = RECORD_LIMIT, what: str = "file") -> str:
    return decode_text(path, read_bytes(path, limit, what))


def read_json(path: Path | str, shape: Mapping[str, Any] | type | None = None, what: str = "file") -> Any:
    """A JSON file's value; with `shape`, checked by `expect` (a dict of keys -> types, or a type)."""
    text = read_text(path, what=what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return value if shape is None else expect(path, value, shape)


def read_toml(path: Path | str) -> dict:
    from toolkit import toml

    try:
        return toml.loads(read_text(path, what="TOML file"))
    except toml.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None


OPTIONAL = object()  # marks a key that may be missing or null: {"key": (OPTIONAL, str)}


def expect(path: Path | str, value: Any, shape: Mapping[str, Any] | type | tuple, where: str = "") -> Any:
    """`value` as `shape` says, else one line naming the file and the key: a type (or tuple of types), or a
    dict of key -> shape for a JSON object whose other keys may be anything. A shape holding OPTIONAL lets the
    key be missing or null."""
    if isinstance(shape, Mapping):
        if not isinstance(value, dict):
            raise InputError(f"{path}: {where or 'the file'} must be a JSON object, not {_json_kind(value)}")
        for key, inner in shape.items():
            optional = isinstance(inner, tuple) and OPTIONAL in inner
            if value.get(key) is None and optional:
                continue
            if key not in value:
                raise InputError(f"{path}: no {_key(where, key)!r} key")
            expect(path, value[key], tuple(t for t in inner if t is not OPTIONAL) if optional else inner,
                   _key(where, key))
        return value
    types = shape if isinstance(shape, tuple) else (shape,)
    if len(types) == 1 and isinstance(types[0], Mapping):
        return expect(path, value, types[0], where)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(_type_name(t) for t in types)
        raise InputError(f"{path}: {where or 'the file'} must be {names}, not {_json_kind(value)}")
    return value


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(t: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "a whole number", float: "a number",
            bool: "true or false", type(None): "null"}.get(t, "an object" if isinstance(t, Mapping) else t.__name__)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return "a list" if isinstance(value, list) else "an object"


def inside(folder: Path, relative: str, path_of: Path | str) -> Path:
    """`folder / relative` for a path a record names, refused unless it stays inside `folder` (a record
    must not lead the toolkit to read or write elsewhere)."""
    candidate = Path(os.path.normpath(Path(folder) / relative))
    base = Path(os.path.normpath(folder))
    if Path(relative).is_absolute() or (candidate != base and base not in candidate.parents):
        raise InputError(f"{path_of}: names {relative!r}, which is not inside {folder}")
    return candidate


def npy(path: Path | str, what: str = ".npy file"):
    """One array saved by NumPy (no pickled objects), loaded whole, else one line."""
    import numpy as np

    regular_file(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {str(exc)[:120]})") from None


def npz(path: Path | str, keys: list[str] | None = None, what: str = ".npz file") -> dict:
    """Every array of an .npz (or the `keys` it must hold), numeric and loaded whole, else one line."""
    import zipfile

    import numpy as np

    regular_file(path, what)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys or [] if k not in data.files]
            if missing:
                raise InputError(f"{path}: no array {missing[0]!r} (it holds {', '.join(data.files) or 'none'})")
            return {k: data[k] for k in (keys or data.files)}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {str(exc)[:120]})") from None

"""Ownership is data: every folder the toolkit writes records what it made there, and the toolkit deletes or
replaces only what that record names. The one rule, for every command that writes:

- A folder a command writes whole (a run folder, a `detect` folder) is used when it does not exist, is empty,
  or is one the toolkit made for the same kind of command (its record names every entry). Anything else is
  refused in one line before any work, and nothing in it is touched: the toolkit never cleans a folder.
- A file the toolkit writes into a folder it shares with others (`report.json` in the runs folder, `export
  --out model.onnx`, `--json FILE`) replaces an existing file only when that folder's record names it.

The record is `.centerface-toolkit.json` in the folder: `{"kind": "run" | "detect" | null, "entries": [...]}`.
A folder of an earlier toolkit (no record, but the toolkit's `.lock` file) is taken as the toolkit's whole.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import InputError

RECORD = ".centerface-toolkit.json"
LOCK = ".lock"
HOUSEKEEPING = (RECORD, LOCK)  # the toolkit's own files in every folder it writes
SHOWN = 3  # entries a refusal names


@dataclass(frozen=True)
class Record:
    kind: str | None  # the command family that writes the folder whole; None: a folder shared with others
    entries: frozenset[str]


def read(folder: Path) -> Record | None:
    """The folder's record; None where it has none (a record that is a link or not the toolkit's is none)."""
    path = Path(folder) / RECORD
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        raw = json.loads(path.read_bytes().decode("utf-8"))
        entries = raw["entries"]
        if not (isinstance(entries, list) and all(isinstance(e, str) for e in entries)):
            return None
        return Record(raw.get("kind") if isinstance(raw.get("kind"), str) else None, frozenset(entries))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def entries(folder: Path) -> list[str]:
    """The folder's entries, less the toolkit's housekeeping files."""
    return sorted(e for e in os.listdir(folder) if e not in HOUSEKEEPING)


def _earlier_toolkits(folder: Path, found: list[str]) -> Record | None:
    """A folder an earlier toolkit wrote (its lock file, no record): the toolkit's whole."""
    lock = Path(folder) / LOCK
    if os.path.lexists(lock) and stat.S_ISREG(os.lstat(lock).st_mode):
        return Record("detect" if "detections.json" in found else "run", frozenset(found))
    return None


def check_folder(folder: Path, kind: str) -> None:
    """`folder` may be written whole by a `kind` command: absent, empty, or the toolkit's (same kind)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    try:
        found = entries(folder)
    except OSError as exc:
        raise InputError(f"{folder}: cannot list it ({exc.strerror})") from None
    if not found:
        return
    record = read(folder) or _earlier_toolkits(folder, found)
    foreign = found if record is None else [e for e in found if e not in record.entries]
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        raise InputError(f"{folder}: holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} the toolkit did not "
                         f"make ({shown}); it writes only into a new or empty folder, or one it made, and never "
                         "cleans one", "pass --out a new or empty folder")
    if record is not None and record.kind not in (None, kind):
        raise InputError(f"{folder}: a folder `{record.kind}` wrote; {kind} writes its own",
                         "pass --out another folder")


def sealed(folder: Path, kind: str) -> str:
    """The record naming every entry of `folder` as the toolkit's (it was staged from owned entries and what the
    command wrote): written as the last file before the folder is swapped in."""
    return _text(Record(kind, frozenset(entries(folder))))


def check_file(path: Path) -> None:
    """An output file may be written at `path`: nothing is there, or the toolkit wrote it (its folder's record)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    record = read(path.parent)
    if record is None or path.name not in record.entries:
        raise InputError(f"{path}: exists and the toolkit did not write it; it replaces only its own files",
                         "pass another path, or move that file away")


def noted(folder: Path, names: set[str]) -> str | None:
    """`folder`'s record with output files `names` added (None: it names them already)."""
    record = read(folder) or Record(None, frozenset())
    return None if names <= record.entries else _text(Record(record.kind, record.entries | names))


def _text(record: Record) -> str:
    return json.dumps({"kind": record.kind, "entries": sorted(record.entries)}, indent=1) + "\n"

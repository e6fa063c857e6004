"""result.json, a run folder's record: the one place it is read, merged and written. Each command owns its
part of it: `run` the run's own keys (it replaces them, keeping `bench`), `bench` its `bench` section, a
container run its `container` record; whatever a command does not own it keeps as it was."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from toolkit import fileio, reading
from toolkit.errors import InputError

FILE = "result.json"
KEPT_BY_RUN = ("bench",)  # what `bench` wrote: a re-run of `run` keeps it


def read(run_dir: Path) -> dict:
    """The run folder's result.json ({} when it has none); a file that is not a JSON object is one line."""
    path = run_dir / FILE
    if not os.path.lexists(path):
        return {}
    found = reading.read_json(path)
    if not isinstance(found, dict):
        raise InputError(f"{path}: not a result.json the toolkit writes (expected a JSON object)")
    return found


def write(run_dir: Path, owned: dict, keep: Iterable[str] | None = None, defaults: dict | None = None) -> dict:
    """Write the keys a command owns over the earlier file, atomically; `keep`: the only earlier keys that
    stay (the command owns the rest; an unreadable earlier file is then replaced), None: every earlier key
    stays. `defaults`: keys written only where the earlier file has none. Returns what was written."""
    if keep is None:
        earlier = read(run_dir)
    else:
        try:
            earlier = {k: v for k, v in read(run_dir).items() if k in set(keep)}
        except InputError:
            earlier = {}
    merged = {**(defaults or {}), **earlier, **owned}
    fileio.write_json(run_dir / FILE, merged)
    return merged

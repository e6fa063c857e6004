"""What a value in a target file may be: its type and range, checked where the file is read, so a wrong
value is one line naming the file, the key, what it must be and what it is (never a traceback later)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import InputError


@dataclass(frozen=True)
class Field:
    expected: str  # what the value must be, as the error says it
    accepts: Callable[[object], bool]

    def check(self, path: Path, key: str, value: object) -> None:
        if not self.accepts(value):
            raise InputError(f"{path}: {key} must be {self.expected}, not {value!r}")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int, high: int | None = None) -> Field:
    span = f"from {low} to {high}" if high is not None else f"{low} or more"
    return Field(f"a whole number {span}", lambda v: _whole(v) and v >= low and (high is None or v <= high))


def size_list(v: object) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_whole(x) and x > 0 for x in v)


TEXT = Field("a string", lambda v: isinstance(v, str))
NAME = Field("a plain name (letters, digits, '.', '_', '-'), not a path",
             lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v) is not None)
FLAG = Field("true or false", lambda v: isinstance(v, bool))
UNIT = Field("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1)
POSITIVE = Field("a number above 0", lambda v: _number(v) and v > 0)
SIZE = Field("[width, height], whole numbers above 0", size_list)
SIZES = Field("a list of [width, height] pairs", lambda v: isinstance(v, list) and bool(v) and all(map(size_list, v)))
BATCHES = Field("a list of whole numbers 1 or more, each once",
                lambda v: isinstance(v, list) and bool(v) and all(_whole(x) and x >= 1 for x in v) and len(set(v)) == len(v))
SCALES_OR_NONE = Field("a list of numbers above 0", lambda v: isinstance(v, list) and all(_number(x) and x > 0 for x in v))
SCALES = Field("a non-empty list of numbers above 0", lambda v: SCALES_OR_NONE.accepts(v) and bool(v))
NON_NEGATIVE = Field("a number 0 or more", lambda v: _number(v) and v >= 0)
TEXTS = Field("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
TEXT_LISTS = Field("a list of lists of strings", lambda v: isinstance(v, list) and all(TEXTS.accepts(x) for x in v))
TEXT_TABLE = Field("a table of strings", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))
RATES = Field("a table of batch size -> images/s above 0",
              lambda v: isinstance(v, dict) and bool(v) and all(k.isdigit() and POSITIVE.accepts(r) for k, r in v.items()))


def check_table(path: Path, table: str | None, values: dict, schema: dict[str, Field]) -> None:
    """Every key of `values` known to `schema`, every value what its Field accepts."""
    where = f"[{table}] " if table else ""
    for key, value in values.items():
        if key not in schema:
            raise InputError(f"{path}: unknown key {key!r}" + (f" in [{table}]" if table else ""))
        schema[key].check(path, f"{where}{key}", value)

"""TOML reading on every supported Python (tomllib from 3.11, the tomli backport before)."""

from __future__ import annotations

try:
    from tomllib import TOMLDecodeError, loads
except ModuleNotFoundError:  # Python 3.10, e.g. the vendor SDK images
    from tomli import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]

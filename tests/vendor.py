"""Vendor wheels from PyPI for the tests that check the toolkit against real vendor artefacts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.paths import cache_dir


def wheel(requirement: str) -> Path:
    """The wheel for this interpreter, downloaded once into the cache."""
    folder = cache_dir() / "vendor-wheels" / requirement.replace("==", "-")
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           "--disable-pip-version-check", "-d", str(folder), requirement], capture_output=True, text=True)
    found = sorted(folder.glob("*.whl"))
    if proc.returncode or not found:
        reason = f"pip download {requirement} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found[0]

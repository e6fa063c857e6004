"""Where the toolkit keeps its cache, runs and the default dataset."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = REPO_ROOT / "targets"


def cache_dir() -> Path:
    """Weights and other downloads: $CENTERFACE_CACHE, else ~/.cache/centerface-toolkit."""
    env = os.environ.get("CENTERFACE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "centerface-toolkit"


def runs_dir() -> Path:
    return Path(os.environ.get("CENTERFACE_RUNS", "runs"))


def sample_image() -> Path:
    """A picture any install has: matplotlib ships Grace Hopper's portrait (public domain)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def default_dataset() -> Path | None:
    """The WIDER FACE val subset shipped beside the project, when it is there."""
    env = os.environ.get("CENTERFACE_DATA")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "data" / "widerface-val-mini"]
    return next((p for p in candidates if p.is_dir()), None)

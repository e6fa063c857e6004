"""Progress without the CLI: the flows take an optional rich Progress and count images on it."""

from __future__ import annotations

from collections.abc import Callable


def counter(progress, description: str, total: int) -> Callable[[int], None] | None:
    """A task of `total` images on `progress` and the function that advances it; None without a display."""
    if progress is None:
        return None
    task = progress.add_task(description, total=total)
    return lambda images: progress.advance(task, images)

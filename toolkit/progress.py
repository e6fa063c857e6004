"""Progress without the CLI: the flows take an optional rich Progress and count images on it."""

from __future__ import annotations

from collections.abc import Callable


def counter(progress, description: str, total: int, transient: bool = False) -> Callable[[int], None] | None:
    """A task of `total` images on `progress` and the function that advances it; None without a display.
    `transient`: the task leaves the display once done (one of many passes, as a search's)."""
    if progress is None:
        return None
    task = progress.add_task(description, total=total)

    def advance(images: int) -> None:
        progress.advance(task, images)
        if transient and next(t for t in progress.tasks if t.id == task).finished:
            progress.remove_task(task)

    return advance

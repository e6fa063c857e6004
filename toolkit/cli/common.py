"""One console, one error path: known errors become one line plus a hint and a non-zero exit."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from toolkit import runfolder
from toolkit.cli.layout import say
from toolkit.errors import InputError, ToolkitError

FULL_WIDTH = 10_000  # output that is not a terminal: lines as long as their content, never wrapped or cut


def _console(stderr: bool) -> Console:
    """Markup off: file names and words in brackets ("x [edited].jpg", "[tta]") print as they are; styles are
    given as Text or style= where wanted. A terminal's width (or $COLUMNS) for a terminal, else the full width."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, highlight=False, markup=False, width=FULL_WIDTH if piped else None)


console = _console(stderr=True)
out = _console(stderr=False)
EXIT_ERROR = 2  # a file system error


def log(line: str) -> None:
    """A line of a command's progress on stderr, wrapped at word boundaries (a path in it stays whole to copy)."""
    say(console, line)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known failures into one line on stderr and an exit code: a ToolkitError with its own label
    and code (`error:` 2, `unavailable:` 3), a file system error naming the path (2), Ctrl-C (130) and
    SIGTERM (143) saying what the run folder kept. CENTERFACE_DEBUG=1 re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ToolkitError, OSError) as exc:
            if os.environ.get("CENTERFACE_DEBUG"):
                raise
            known = isinstance(exc, ToolkitError)
            fail(f"{exc.label if known else 'error'}: {_describe(exc)}", exc.exit_code if known else EXIT_ERROR)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, runfolder.Terminated)
            kept = runfolder.last_outcome() or "no partial files were kept"
            fail(f"{'terminated' if terminated else 'interrupted'}: stopped cleanly, {kept}", 143 if terminated else 130)

    return wrapper


def whole_numbers(text: str) -> list[int] | None:
    """A comma-separated list of whole numbers (`1,8,32`), or None where it is not one (the caller names its
    option and what it takes)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        return None


def in_range(option: str, value: float, low: float, high: float | None = None) -> float:
    """A numeric option's value, finite and within [low, high], or one line naming the option."""
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        span = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise InputError(f"{option} {value}: must be a finite number {span}")
    return value


def fail(line: str, code: int) -> None:
    """Print `line` on stderr (one line in a log; wrapped at words on a terminal) and exit with `code`."""
    say(console, line, style="bold red" if code else None)
    raise typer.Exit(code)


def _describe(exc: ToolkitError | OSError) -> str:
    if isinstance(exc, OSError):
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or str(exc))
    else:
        text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    kept = runfolder.last_outcome()
    return runfolder.public(" ".join(text.split())) + (f"; {kept}" if kept else "")


class RateColumn(ProgressColumn):
    """Items (images, frames) a second, as the bar advances."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "", style="progress.data.speed")


def progress() -> Progress:
    """The bar every long command shows: done of total, rate, elapsed and left (ETA). Only on a terminal: a log
    would get each bar once, when it ends, after the lines that came while it ran."""
    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=not console.is_terminal)

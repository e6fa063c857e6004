"""One console, one error path: known errors become one line plus a hint and a non-zero exit."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from toolkit.errors import ToolkitError, Unavailable

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)
EXIT_ERROR = 2
EXIT_UNAVAILABLE = 3


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ToolkitError into `error: <message>` (and `hint: ...`); CENTERFACE_DEBUG=1 re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToolkitError as exc:
            if os.environ.get("CENTERFACE_DEBUG"):
                raise
            prefix = "unavailable" if isinstance(exc, Unavailable) else "error"
            console.print(f"[bold red]{prefix}:[/] {escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                console.print(f"[dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)
            raise typer.Exit(EXIT_UNAVAILABLE if isinstance(exc, Unavailable) else EXIT_ERROR) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: stopped cleanly, no partial files were kept")
            raise typer.Exit(130) from None

    return wrapper


def progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)

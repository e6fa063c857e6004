"""Errors the CLI turns into one clear line (set CENTERFACE_DEBUG=1 for the traceback)."""

from __future__ import annotations


class ToolkitError(Exception):
    """A known failure: `message` says what is wrong (naming the file), `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(ToolkitError):
    """Bad user input: an unreadable image, a wrong model file, a missing dataset."""


class Unavailable(ToolkitError):
    """A backend or tool this machine does not have; printed as 'unavailable: <reason>'."""

"""Errors the CLI turns into one clear line (set CENTERFACE_DEBUG=1 for the traceback). Each carries the
word it is printed with and the exit code the command ends with."""

from __future__ import annotations


class ToolkitError(Exception):
    """A known failure: `message` says what is wrong (naming the file), `hint` what to do."""

    label = "error"
    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(ToolkitError):
    """Bad user input: an unreadable image, a wrong model file, a missing dataset."""


class DeviceError(ToolkitError):
    """A runtime (a device, ONNX Runtime) failed on a batch it had accepted: the images of that batch are named
    with the whole cause, and --skip-bad skips them."""


class Unavailable(ToolkitError):
    """A backend or tool this machine does not have; printed as 'unavailable: <reason>'."""

    label = "unavailable"
    exit_code = 3


class Exited(ToolkitError):
    """A command that ran elsewhere (a target's container) failed and ends ours with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

"""`doctor`: what this machine can run: packages, the Docker daemon, each backend's SDK, tools and
devices, and every target's availability."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from toolkit import machine
from toolkit.cli.common import handle_errors, out
from toolkit.flows.doctor import checks


@handle_errors
def doctor_cmd() -> None:
    """Show which packages, Docker, GPU / TensorRT and Ascend CANN tools this machine has."""
    table = Table(title="centerface-toolkit doctor")
    table.add_column("check")
    table.add_column("ok", justify="center")
    table.add_column("detail")
    for check in checks():
        table.add_row(check.name, Text("yes", "green") if check.ok else Text("no", "red"), check.detail)
    out.print(table)
    for key, value in machine.describe().items():
        out.print(f"{key}: {value}")

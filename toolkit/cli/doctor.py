"""`doctor`: what this machine can run: packages, the Docker daemon, each backend's SDK, tools and
devices, and every target's availability."""

from __future__ import annotations

from toolkit import machine
from toolkit.cli.common import handle_errors, out
from toolkit.cli.layout import Col, Grid, say, show
from toolkit.flows.doctor import checks


@handle_errors
def doctor_cmd() -> None:
    """Show which packages, Docker, GPU / TensorRT and Ascend CANN tools this machine has."""
    grid = Grid("centerface-toolkit doctor", [Col("check", right=False, prose=True), Col("ok", right=False),
                                              Col("detail", right=False, prose=True)])
    for check in checks():
        grid.add(check.name, "yes" if check.ok else "no", check.detail, style="" if check.ok else "red")
    show(out, grid)
    for key, value in machine.describe().items():
        say(out, f"{key}: {value}")

"""`doctor`: what this machine can run (packages, Docker daemon, CANN tools, TensorRT, a GPU)."""

from __future__ import annotations

import shutil
import subprocess

from rich.table import Table

from toolkit import machine
from toolkit.backends.ascend.cann import SET_ENV, Cann
from toolkit.cli.common import handle_errors, out
from toolkit.errors import Unavailable


def _docker() -> tuple[bool, str]:
    from toolkit.containers import engine

    try:
        return True, f"daemon {engine.client().version().get('Version', '?')}"
    except Unavailable as exc:
        return False, exc.message


def _gpu() -> tuple[bool, str]:
    if not shutil.which("nvidia-smi"):
        return False, "nvidia-smi not found"
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stdout.strip() or proc.stderr.strip())[:80]


def checks() -> list[tuple[str, bool, str]]:
    rows = []
    for pkg in machine.PACKAGES:
        v = machine.package_version(pkg)
        rows.append((f"python: {pkg}", v is not None, v or "not installed"))
    trt = machine.package_version("tensorrt")
    rows.append(("python: tensorrt", trt is not None, trt or "not installed (T4 targets run in their image)"))
    rows.append(("docker", *_docker()))
    rows.append(("GPU", *_gpu()))
    cann = Cann.find()
    rows.append(("CANN set_env.sh", cann.set_env, str(SET_ENV)))
    for tool, found in (("atc", cann.atc), ("amct_onnx", cann.amct_onnx), ("npu-smi", cann.npu_smi),
                        ("benchmark (old Ascend tool)", cann.benchmark), ("trtexec", shutil.which("trtexec"))):
        rows.append((f"tool: {tool}", found is not None, found or "not found"))
    rows.append(("python: ais_bench", cann.ais_bench, "importable" if cann.ais_bench else "not installed"))
    rows.append(("Ascend devices", bool(cann.devices), ", ".join(cann.devices) or "none"))
    from toolkit import backends, targets

    for name in targets.available():
        reason = backends.get(targets.load(name).backend).unavailable()
        rows.append((f"target: {name}", reason is None, reason or "can run here"))
    return rows


@handle_errors
def doctor() -> None:
    """Show which packages, Docker, GPU / TensorRT and Ascend CANN tools this machine has."""
    table = Table(title="centerface-toolkit doctor")
    table.add_column("check")
    table.add_column("ok", justify="center")
    table.add_column("detail")
    for name, ok, detail in checks():
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", detail)
    out.print(table)
    for key, value in machine.describe().items():
        out.print(f"{key}: {value}")

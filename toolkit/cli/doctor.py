"""`doctor`: what this machine can run (packages, Docker daemon, CANN tools, TensorRT, a GPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rich.table import Table

from toolkit import machine
from toolkit.cli.common import handle_errors, out

CANN_SET_ENV = Path("/usr/local/Ascend/ascend-toolkit/set_env.sh")
ASCEND_DEVICES = ("/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")


def _docker() -> tuple[bool, str]:
    try:
        import docker
    except ImportError:
        return False, "python package 'docker' missing"
    try:
        client = docker.from_env(timeout=5)
        return True, f"daemon {client.version().get('Version', '?')}"
    except Exception as exc:
        return False, f"no daemon ({str(exc).splitlines()[0][:80]})"


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
    rows.append(("CANN set_env.sh", CANN_SET_ENV.is_file(), str(CANN_SET_ENV)))
    for tool in ("atc", "amct_onnx", "ais_bench", "npu-smi", "trtexec"):
        path = shutil.which(tool)
        rows.append((f"tool: {tool}", path is not None, path or "not on PATH"))
    present = [d for d in ASCEND_DEVICES if os.path.exists(d)]
    rows.append(("Ascend devices", len(present) == len(ASCEND_DEVICES), ", ".join(present) or "none"))
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

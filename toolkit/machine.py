"""What this machine is and has: recorded in every result.json and shown by `doctor`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

PACKAGES = ("numpy", "opencv-python-headless", "onnx", "onnxruntime", "onnxsim", "torch",
            "typer", "rich", "scipy", "matplotlib", "docker")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


CORES_ENV = "CENTERFACE_CORES"  # set by a Ray worker to the CPUs Ray gave it
HOST_DEVICES_ENV = "CENTERFACE_HOST_DEVICE_IDS"  # set in a target's container: the host ids of its chips, in order


def usable_cores() -> int:
    """The cores this process may use: its affinity (which a container's --cpuset-cpus narrows), or
    fewer when $CENTERFACE_CORES says so (a Ray worker sharing the machine)."""
    found = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    given = os.environ.get(CORES_ENV, "")
    return max(1, min(found, int(given))) if given.isdigit() else found


def available_memory() -> int | None:
    """Bytes a new allocation can have: the least of the system's free memory (MemAvailable), this cgroup's
    headroom (a container's memory limit) and this process's address space left (`ulimit -v`); None where
    nothing says."""
    found = [f for f in (_meminfo("/proc/meminfo", "MemAvailable:"), _cgroup_headroom(), _address_space_left())
             if f is not None]
    return max(0, min(found)) if found else None


def _meminfo(path: str, key: str) -> int | None:
    """A `key: N kB` line of a /proc file, in bytes."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _address_space_left() -> int | None:
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    used = _meminfo("/proc/self/status", "VmSize:")
    return None if used is None else limit - used


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "runs_in": runs_in(),
    }


def runs_in() -> str:
    """'image <tag>' inside a toolkit image (its Dockerfile sets CENTERFACE_IMAGE), else 'host'."""
    image = os.environ.get("CENTERFACE_IMAGE")
    return f"image {image}" if image else "host"


def versions() -> dict[str, str | None]:
    from toolkit import __version__

    return {"toolkit": __version__, **{p: package_version(p) for p in PACKAGES}}

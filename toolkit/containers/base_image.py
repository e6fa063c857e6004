"""The offline base image: docker/make-base-image.sh (debootstrap + docker import), for hosts with
no image registry."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from toolkit.containers import engine
from toolkit.containers.images import OFFLINE_BASE
from toolkit.errors import InputError, ToolkitError, Unavailable
from toolkit.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "docker" / "make-base-image.sh"
BASE_LABEL = "io.centerface-toolkit.base"  # set by the script's docker import


def make(name: str = OFFLINE_BASE, suite: str = "bookworm", mirror: str | None = None, force: bool = False,
         log: Callable[[str], None] = print) -> dict:
    """Make `name` unless it exists (or `force`); return its id and size."""
    from docker.errors import ImageNotFound

    client = engine.client()
    try:
        image = client.images.get(name)
    except ImageNotFound:
        image = None
    if image is not None and not force:
        log(f"{name} exists ({image.short_id}); --force makes it again")
        return _describe(image, made=False)
    if image is not None and not (image.labels or {}).get(BASE_LABEL):
        raise InputError(f"image {name}: exists and the toolkit did not make it (no {BASE_LABEL} label); --force "
                         "would take its name", "pass --name another tag, or remove that image")
    missing = [tool for tool in ("debootstrap", "docker", "tar") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(f"the offline base image needs {', '.join(missing)}",
                          "apt-get install debootstrap docker.io")
    if os.geteuid() != 0:
        raise InputError("debootstrap needs root to make the base image", f"sudo {SCRIPT} {name} {suite}")
    command = ["sh", str(SCRIPT), name, suite] + ([mirror] if mirror else [])
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-15:]
            log(line.rstrip())
    if proc.returncode:
        raise ToolkitError(f"{SCRIPT.name} failed (exit {proc.returncode}): {tail[-1] if tail else ''}",
                           "the last lines:\n" + "\n".join(f"    {t}" for t in tail))
    return _describe(client.images.get(name), made=True)


def _describe(image, made: bool) -> dict:
    return {"image": image.tags[0] if image.tags else image.id, "id": image.id,
            "size_bytes": image.attrs.get("Size"), "made": made}

"""`doctor`: what this machine can run. Each backend says what it looks for (SDK, tools, devices)."""

from __future__ import annotations

from toolkit import backends, machine, targets
from toolkit.backends.base import Check
from toolkit.errors import Unavailable


def _docker() -> Check:
    from toolkit.containers import engine

    try:
        return Check("docker", True, f"daemon {engine.client().version().get('Version', '?')}")
    except Unavailable as exc:
        return Check("docker", False, exc.message)


def checks() -> list[Check]:
    """Python packages, the Docker daemon, every backend's own checks, then every target's availability."""
    found = []
    for pkg in machine.PACKAGES:
        v = machine.package_version(pkg)
        found.append(Check(f"python: {pkg}", v is not None, v or "not installed"))
    found.append(_docker())
    for name in backends.names():
        found += backends.get(name).checks()
    for name in targets.available():
        target = targets.load(name)
        backend = backends.get(target.backend)
        reason = backend.unavailable_for(target)
        if reason and backend.emulation is not None:
            reason += f"; its numerics run here: python -m toolkit run --target {name} --mode emulate"
        found.append(Check(f"target: {name}", reason is None, reason or "can run here"))
    return found

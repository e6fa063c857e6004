"""Run a spec's container: logs streamed, its exit code returned, the container removed in every case."""

from __future__ import annotations

import sys

from toolkit.containers import engine
from toolkit.containers.runspec import RunSpec
from toolkit.errors import ToolkitError


def docker_kwargs(spec: RunSpec, tty: bool) -> dict:
    """The spec as keyword arguments of the SDK's containers.create."""
    from docker.types import DeviceRequest
    from docker.types import Mount as DockerMount

    kwargs = {
        "image": spec.image, "command": spec.command, "user": spec.user, "environment": spec.environment,
        "mounts": [DockerMount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
        "devices": spec.devices or None, "network_mode": spec.network, "tty": tty, "detach": True,
        "labels": {"io.centerface-toolkit.run": "1"},
    }
    if spec.groups:
        kwargs["group_add"] = spec.groups
    if spec.gpus is not None:
        kwargs["device_requests"] = [DeviceRequest(device_ids=spec.gpus or None, count=None if spec.gpus else -1,
                                                   capabilities=[["gpu"]])]
    return kwargs


def run(spec: RunSpec) -> tuple[int, str]:
    """Create, start and follow the container: its exit code and the id of the image it ran.
    Ctrl-C stops it; it is always removed."""
    from docker.errors import APIError

    client = engine.client()
    tty = sys.stderr.isatty()  # live progress bars from inside when we have a terminal
    try:
        container = client.containers.create(**docker_kwargs(spec, tty))
    except APIError as exc:
        hint = "GPU containers need the NVIDIA Container Toolkit on the host" if spec.gpus is not None else None
        raise ToolkitError(f"docker could not create a container from {spec.image}: "
                           f"{(exc.explanation or str(exc)).strip()}", hint) from None
    try:
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
        return int(container.wait()["StatusCode"]), container.attrs["Image"]
    except KeyboardInterrupt:
        container.stop(timeout=10)
        raise
    finally:
        container.remove(force=True)

"""The Docker engine connection, with its failures turned into one clear line."""

from __future__ import annotations

import os

from toolkit.errors import Unavailable


def socket_path() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def client():
    """A connected docker.DockerClient; Unavailable when there is no daemon or no permission."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise Unavailable("the Docker SDK for Python is not installed", "pip install docker") from None
    try:
        engine = docker.from_env(version="auto", timeout=600)
        engine.ping()
        return engine
    except DockerException as exc:
        raise _explain(exc) from None


def _explain(exc: Exception) -> Unavailable:
    text = str(exc)
    where = socket_path()
    if "Permission denied" in text or "PermissionError" in text:
        return Unavailable(f"permission denied on the Docker socket {where}",
                           "add your user to the docker group (sudo usermod -aG docker $USER, then log in again) "
                           "or run as root")
    if any(s in text for s in ("No such file", "Connection refused", "FileNotFoundError", "ConnectionRefused")):
        return Unavailable(f"no Docker daemon at {where}",
                           "start it (sudo systemctl start docker, or dockerd &) or set DOCKER_HOST")
    return Unavailable(f"the Docker daemon at {where} is not usable: {text.splitlines()[0] if text else exc!r}")

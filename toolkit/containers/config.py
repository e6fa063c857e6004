"""A target's `[container]` section: which Dockerfile and base image, which devices, which user."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toolkit import PROJECT, __version__
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT
from toolkit.target import Target

DEVICE_KINDS = ("none", "ascend", "nvidia")
# host: the invoking user's uid:gid (with the device nodes' group where a device needs one), so run folders stay
# theirs; root: only for a host whose driver refuses anyone else, which the plan then says
USERS = ("host", "root")


@dataclass(frozen=True)
class ContainerConfig:
    target: str
    dockerfile: str = "cpu"  # docker/<dockerfile>.Dockerfile
    base_image: str | None = None  # None: the Dockerfile's own default (ARG BASE_IMAGE)
    devices: str = "none"
    user: str = "host"
    build_args: dict[str, str] = field(default_factory=dict)
    device: int = 0  # the device the target file names (its backend table's device_id), without --device-ids

    @classmethod
    def of(cls, target: Target) -> ContainerConfig:
        raw = dict(target.extra.get("container", {}))  # keys and types checked when the target file was read
        where = f"target {target.name} [container]"
        config = cls(target.name, **raw, device=int((target.extra.get(target.backend) or {}).get("device_id", 0)))
        if config.devices not in DEVICE_KINDS:
            raise InputError(f"{where}: devices {config.devices!r} is not one of {', '.join(DEVICE_KINDS)}")
        if config.user not in USERS:
            raise InputError(f"{where}: user {config.user!r} is not one of {', '.join(USERS)}")
        if not config.dockerfile_path().is_file():
            raise InputError(f"{where}: no {config.dockerfile_path()}")
        return config

    @property
    def dockerfile_in_context(self) -> str:
        return f"docker/{self.dockerfile}.Dockerfile"

    def dockerfile_path(self) -> Path:
        return REPO_ROOT / self.dockerfile_in_context

    @property
    def image(self) -> str:
        return f"{PROJECT}/{self.target}:{__version__}"

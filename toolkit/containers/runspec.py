"""What a target's container gets: mounts, devices, GPU request, user and environment.

Pure data, built without a Docker engine, so every target's spec is unit-tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import machine, runfolder
from toolkit.containers.config import ContainerConfig
from toolkit.errors import InputError, Unavailable

RUNS, CACHE, DATA, CALIB = "/runs", "/cache", "/data", "/calib"  # CALIB: --calib-data, read-only
# Ascend hosts: the chips' nodes, the shared management nodes, the driver, npu-smi with the DCMI library it
# loads and the install record it reads (as Ascend's own images are run: vllm-ascend's docker run lines).
ASCEND_SHARED_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
# The Ascend driver's nodes are crw-rw---- for HwHiAiUser's group: the container runs as the invoking user with
# that group added (read off the node), not as root.
ASCEND_GROUP_NODE = "/dev/davinci_manager"
ASCEND_DRIVER_MOUNTS = ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/etc/ascend_install.info")
NPU_SMI = ("/usr/local/sbin/npu-smi", "/usr/local/bin/npu-smi")  # where Ascend's driver installs it; older hosts


def npu_smi() -> str:
    """The host's npu-smi: /usr/local/sbin, else /usr/local/bin where only that exists."""
    return next((p for p in NPU_SMI if os.path.exists(p)), NPU_SMI[0])


@dataclass(frozen=True)
class Mount:
    source: str  # on the host
    target: str  # in the container
    read_only: bool


@dataclass
class RunSpec:
    image: str
    command: list[str]
    mounts: list[Mount]
    devices: list[str] = field(default_factory=list)  # host:container:permissions
    gpus: list[str] | None = None  # None: no GPU; []: all GPUs; else these device ids
    user: str | None = None
    groups: list[str] = field(default_factory=list)  # supplementary groups: the device nodes' (--group-add)
    user_why: str = ""  # why the container runs as `user` (with `groups`), for the plan
    environment: dict[str, str] = field(default_factory=dict)
    network: str = "none"  # the chain needs no network: the host fetched the weights into the cache
    hardware: list[str] = field(default_factory=list)  # device nodes and driver files the host must have

    def docker_cli(self) -> list[str]:
        """The same container as a `docker run` command line (shown by --dry-run)."""
        cli = ["docker", "run", "--rm", "--network", self.network]
        if self.user:
            cli += ["--user", self.user]
        for group in self.groups:
            cli += ["--group-add", group]
        for device in self.devices:
            cli += ["--device", device]
        if self.gpus is not None:
            cli += ["--gpus", f"device={','.join(self.gpus)}" if self.gpus else "all"]
        for m in self.mounts:
            cli += ["-v", f"{m.source}:{m.target}{':ro' if m.read_only else ''}"]
        for key, value in self.environment.items():
            cli += ["-e", f"{key}={value}"]
        return cli + [self.image, *self.command]


def container_path(host_run_dir: Path) -> str:
    """Where the container sees a run folder: /runs/<its name> (a staging copy by the name it stands for)."""
    return f"{RUNS}/{Path(runfolder.public(str(host_run_dir.resolve()))).name}"


def make(config: ContainerConfig, cli_args: list[str], run_dir: Path | None, cache: Path, data: Path | None,
         device_ids: list[int] | str | None = None, read_only: tuple[Mount, ...] = ()) -> RunSpec:
    """The spec for running `python -m toolkit <cli_args>` in the target's image: exactly the run folder at
    /runs/<name>, the cache (weights, calibration sets) at /cache, the dataset read-only at /data, the devices
    the target names (--device-ids, else its file's device_id), as the invoking user. `read_only`: what else the
    command reads (detect's inputs, the run folder it detects with). `run_dir` None: no folder to write (serve).
    """
    written = [Mount(str(run_dir.resolve()), container_path(run_dir), False)] if run_dir is not None else []
    mounts = [*written, Mount(str(cache.resolve()), CACHE, False), *read_only]
    if data is not None:
        mounts.append(Mount(str(data.resolve()), DATA, True))
    env = {"CENTERFACE_RUNS": RUNS, "CENTERFACE_CACHE": CACHE, "HOME": "/tmp"}
    spec = RunSpec(config.image, cli_args, mounts, environment=env, user=f"{os.getuid()}:{os.getgid()}",
                   user_why="the invoking user: what it writes in the run folder stays theirs")
    if config.user == "root":
        spec.user, spec.user_why = "0:0", "root, as its target file asks (a host whose driver refuses anyone else)"
    ids = host_chips() if device_ids == "all" else list(device_ids or [config.device])
    if config.devices == "ascend":
        spec.devices = [f"{d}:{d}:rwm" for d in [f"/dev/davinci{i}" for i in ids] + list(ASCEND_SHARED_DEVICES)]
        driver = [*ASCEND_DRIVER_MOUNTS, npu_smi()]
        spec.mounts += [Mount(p, p, True) for p in driver]
        spec.hardware = [d.split(":", 1)[0] for d in spec.devices] + driver
        spec.environment["ASCEND_DEVICE_ID"] = "0"  # ACL numbers the chips a container was given from 0
        spec.environment[machine.HOST_DEVICES_ENV] = ",".join(map(str, ids))
        if config.user != "root":
            spec.groups = [_node_group(ASCEND_GROUP_NODE)]
            spec.user_why = (f"the invoking user with the group of the Ascend driver's nodes ({ASCEND_GROUP_NODE}, "
                             "mode 660 for HwHiAiUser's group), not root")
    elif config.devices == "nvidia":
        spec.gpus = [] if device_ids == "all" else [str(i) for i in ids]  # [] asks for every GPU
    return spec


def _node_group(node: str) -> str:
    """The group id owning a device node, as --group-add takes it (a placeholder where the node is missing:
    a plan made on a host without the device)."""
    try:
        return str(os.stat(node).st_gid)
    except OSError:
        return f"<group of {node}>"


def host_chips() -> list[int]:
    """The Ascend chips whose device nodes this host has (/dev/davinci<N>), for --device-ids all."""
    nodes = Path("/dev").glob("davinci[0-9]*")
    return sorted(int(n.name[len("davinci"):]) for n in nodes if n.name[len("davinci"):].isdigit()) or [0]


def check_hardware(spec: RunSpec, target: str) -> None:
    """The device nodes and driver files the spec passes in exist on this host."""
    missing = [p for p in spec.hardware if not os.path.exists(p)]
    if missing:
        raise Unavailable(f"target {target}: {', '.join(missing)} missing on this host",
                         "is the NPU driver installed? --device-ids picks other chips")


def check_folders(spec: RunSpec, target: str) -> None:
    """The folders the spec mounts exist on this host."""
    folders = [m.source for m in spec.mounts if m.source not in spec.hardware and not os.path.exists(m.source)]
    if folders:
        raise InputError(f"target {target}: {folders[0]} does not exist (a folder the container needs)")

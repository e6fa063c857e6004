"""The host side of `--mode container`: check the host and the image before any work, run the toolkit's
own CLI in the target's image on the (staged) run folder, and note which image ran."""

from __future__ import annotations

from pathlib import Path

from toolkit import result_file, runfolder
from toolkit.containers import engine, images, runspec
from toolkit.containers.config import ContainerConfig
from toolkit.errors import Exited, InputError
from toolkit.paths import cache_dir
from toolkit.target import Target

MODES = ("auto", "host", "container", "emulate")


def resolve_mode(mode: str, spec: Target) -> str:
    """host, container or emulate (the target's numerics on this CPU): `auto` is what the target file's
    runs_in says."""
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    return spec.runs_in if mode == "auto" else mode


def flags(pairs: list[tuple[str, object]]) -> list[str]:
    """CLI flags for the options that were given (None: left to the defaults inside)."""
    return [str(part) for flag, value in pairs if value is not None for part in (flag, value)]


def device_flags(spec: Target) -> list[str]:
    """`--device-ids` for the toolkit inside the container: a container sees just the devices it was
    given (those the target names), numbered from 0, so inside it uses every one it sees."""
    return ["--device-ids", "all"] if ContainerConfig.of(spec).devices != "none" else []


def built_image(spec: Target, device_ids: list[int] | str | None) -> ContainerConfig:
    """The target's container settings, once the host's devices and the built image are checked
    (before any work)."""
    config = ContainerConfig.of(spec)
    runspec.check_hardware(runspec.make(config, [], Path("."), cache_dir(), None, device_ids), spec.name)
    images.require_image(config)
    return config


def container_spec(config: ContainerConfig, cli_args: list[str], run_dir: Path, data: Path | None,
                   device_ids: list[int] | str | None, read_only: tuple[runspec.Mount, ...] = ()) -> runspec.RunSpec:
    """`python -m toolkit <cli_args> --out <run folder> [--data /data]` in the target's image. The host
    stages the run folder and swaps it in afterwards, so the container writes into it directly."""
    args = [*cli_args, "--mode", "host", "--out", runspec.container_path(run_dir)]
    if data is not None:
        args += ["--data", runspec.DATA]
    spec = runspec.make(config, args, run_dir, cache_dir(), data, device_ids, read_only)
    spec.environment[runfolder.STAGED_ENV] = "1"
    return spec


def in_container(config: ContainerConfig, cli_args: list[str], run_dir: Path, data: Path | None,
                 device_ids: list[int] | str | None, log, read_only: tuple[runspec.Mount, ...] = ()) -> str:
    """Run `container_spec` (after `built_image`) and follow it; a failure ends the command with the
    container's exit code. Returns the image id it ran."""
    from toolkit.containers import run as container_run

    cache_dir().mkdir(parents=True, exist_ok=True)
    plan = container_spec(config, cli_args, run_dir, data, device_ids, read_only)
    runspec.check_folders(plan, config.target)  # the hardware was checked by `built_image`, before any work
    log(f"container {config.image}: python -m toolkit {' '.join(plan.command)}")
    code, image_id = container_run.run(plan)
    if code:
        raise Exited(f"the {config.image} container exited with {code}", code)
    return image_id


def serve_in_container(config: ContainerConfig, cli_args: list[str], device_ids: list[int] | str | None, log,
                       read_only: tuple[runspec.Mount, ...]) -> None:
    """`python -m toolkit <cli_args>` (a service) in the target's image until it stops: on the host's network (it
    listens where it was told to), with what it reads mounted read-only and no folder to write."""
    from toolkit.containers import run as container_run

    cache_dir().mkdir(parents=True, exist_ok=True)
    plan = runspec.make(config, [*cli_args, "--mode", "host"], None, cache_dir(), None, device_ids, read_only)
    plan.network = "host"
    runspec.check_folders(plan, config.target)
    log(f"container {config.image}: python -m toolkit {' '.join(plan.command)}")
    code, _ = container_run.run(plan)
    if code:
        raise Exited(f"the {config.image} container exited with {code}", code)


def record_image(run_dir: Path, config: ContainerConfig, image_id: str, data: Path | None,
                 device_ids: list[int] | str | None = None) -> None:
    """Note in result.json which image (tag, id, size) the run came from, the dataset's host path, and the
    host's ids of the chips the container numbered 0, 1, ... (its own ids are those)."""
    image = engine.client().images.get(image_id)
    record = {"container": {"image": config.image, "id": image_id, "size_bytes": image.attrs.get("Size")}}
    host_device_ids = runspec.host_chips() if device_ids == "all" and config.devices == "ascend" else device_ids
    if isinstance(host_device_ids, list):
        record["container"]["devices"] = [{"host_id": h, "container_id": i} for i, h in enumerate(host_device_ids)]
    if data is not None:
        record["dataset"] = str(data)
    result_file.write(run_dir, record)

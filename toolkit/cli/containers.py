"""Container commands: `build` a target's image, make the offline `base-image`, and the
`--mode container` path of `run` and `bench` (the same CLI, inside the target's image)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import fileio, runfolder, targets
from toolkit.cli.common import console, handle_errors, out
from toolkit.containers import base_image, engine, images, runspec
from toolkit.containers.config import ContainerConfig
from toolkit.errors import InputError
from toolkit.paths import cache_dir
from toolkit.targets import Target

MODES = ("auto", "host", "container")
ModeOpt = Annotated[str, typer.Option(help="Where to run: host, container (the target's image), or auto (the target file's runs_in).")]
DeviceIdsOpt = Annotated[Optional[str], typer.Option(help="NPU / GPU ids for the container, e.g. 0 or 0,1 (default 0; GPUs: all).")]


@handle_errors
def build_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    base: Annotated[Optional[str], typer.Option("--base-image", help="Base image instead of the Dockerfile's default (e.g. centerface-toolkit/base:bookworm from `base-image`).")] = None,
    extra_ca_cert: Annotated[Optional[Path], typer.Option(help="A PEM CA bundle to trust inside the build (hosts behind a TLS-intercepting proxy).")] = None,
    index_url: Annotated[Optional[str], typer.Option(help="A PyPI mirror or index URL for pip inside the build.")] = None,
    no_cache: Annotated[bool, typer.Option(help="Rebuild every layer.")] = False,
) -> None:
    """Build the target's image (docker/<family>.Dockerfile) through the Docker SDK, tagged centerface-toolkit/<target>:<version>."""
    config = ContainerConfig.of(targets.load(target))
    options = images.BuildOptions(base, extra_ca_cert, index_url, no_cache)
    console.print(f"building {config.image} from {config.dockerfile_in_context} "
                  f"(base {images.base_image_for(config, options)})")
    built = images.build(config, options, lambda line: console.out(line, highlight=False))
    out.print(f"built {built['image']} ({built['id'][7:19]}, {built['size_bytes'] / 1e6:.0f} MB)")


@handle_errors
def base_image_cmd(
    name: Annotated[str, typer.Option(help="Tag for the image.")] = images.OFFLINE_BASE,
    suite: Annotated[str, typer.Option(help="Debian suite.")] = "bookworm",
    mirror: Annotated[Optional[str], typer.Option(help="Debian mirror URL (default deb.debian.org).")] = None,
    force: Annotated[bool, typer.Option(help="Make it again even if it exists.")] = False,
) -> None:
    """Make a Debian base image with Python from Debian's packages (debootstrap + docker import): for hosts with no image registry."""
    made = base_image.make(name, suite, mirror, force, lambda line: console.out(line, highlight=False))
    out.print(f"{'made' if made['made'] else 'have'} {made['image']} ({made['size_bytes'] / 1e6:.0f} MB)")


def resolve_mode(mode: str, spec: Target) -> str:
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    return spec.runs_in if mode == "auto" else mode


def parse_device_ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids):
        raise InputError(f"--device-ids {text!r}: expected numbers 0 or more, such as 0 or 0,1")
    return ids


def flags(pairs: list[tuple[str, object]]) -> list[str]:
    """CLI flags for the options that were given (None: left to the defaults inside)."""
    return [str(part) for flag, value in pairs if value is not None for part in (flag, value)]


def built_image(spec: Target, device_ids: list[int] | None) -> ContainerConfig:
    """The target's container settings, once the host's devices and the built image are checked
    (before any work)."""
    config = ContainerConfig.of(spec)
    runspec.check_hardware(runspec.make(config, [], Path("."), cache_dir(), None, device_ids), spec.name)
    images.require_image(config)
    return config


def container_spec(config: ContainerConfig, cli_args: list[str], run_dir: Path, data: Path | None,
                   device_ids: list[int] | None) -> runspec.RunSpec:
    """`python -m toolkit <cli_args> --out <run folder> [--data /data]` in the target's image. The host
    stages the run folder and swaps it in afterwards, so the container writes into it directly."""
    args = [*cli_args, "--mode", "host", "--out", runspec.container_path(run_dir)]
    if data is not None:
        args += ["--data", runspec.DATA]
    spec = runspec.make(config, args, run_dir, cache_dir(), data, device_ids)
    spec.environment[runfolder.STAGED_ENV] = "1"
    return spec


def in_container(config: ContainerConfig, cli_args: list[str], run_dir: Path, data: Path | None,
                 device_ids: list[int] | None) -> str:
    """Run `container_spec` (after `built_image`) and follow it; its exit code becomes ours. Returns the
    image id it ran."""
    from toolkit.containers import run as container_run

    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir().mkdir(parents=True, exist_ok=True)
    plan = container_spec(config, cli_args, run_dir, data, device_ids)
    runspec.check_folders(plan, config.target)  # the hardware was checked by `built_image`, before any work
    console.print(f"[bold]container[/] {config.image}: python -m toolkit {' '.join(plan.command)}")
    code, image_id = container_run.run(plan)
    if code:
        console.print(f"[bold red]error:[/] the {config.image} container exited with {code}")
        raise typer.Exit(code)
    return image_id


def record_image(result_path: Path, config: ContainerConfig, image_id: str, data: Path | None) -> None:
    """Note in result.json which image (tag, id, size) the run came from, and the dataset's host path."""
    import json

    result = json.loads(result_path.read_text())
    image = engine.client().images.get(image_id)
    result["container"] = {"image": config.image, "id": image_id, "size_bytes": image.attrs.get("Size")}
    if data is not None:
        result["dataset"] = str(data)
    fileio.write_json(result_path, result)

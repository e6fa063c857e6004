"""Container commands: `build` a target's image, make the offline `base-image`; the options that pick
where `run` and `bench` run (the host side of `--mode container` is toolkit/containers/launch.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import backends, targets
from toolkit.cli.common import console, handle_errors, out, whole_numbers
from toolkit.cli.layout import say
from toolkit.containers import base_image, images
from toolkit.containers.config import ContainerConfig
from toolkit.errors import InputError

ModeOpt = Annotated[str, typer.Option(help="Where to run: host; container (the target's image); emulate (the device's numerics on this CPU, for the Ascend and TensorRT targets: their AP, never their speed); or auto (the target file's runs_in).")]
EngineOpt = Annotated[str, typer.Option(help="local (this process) or ray (images sharded over Ray workers; needs the [ray] extra).")]
AddressOpt = Annotated[Optional[str], typer.Option(help="--engine ray: the cluster to join, e.g. 10.0.0.5:6379 (default: a local Ray with this machine's CPUs).")]
WorkersOpt = Annotated[int, typer.Option(help="--engine ray: Ray workers (actors), each with its share of the CPUs and its own device.")]
DeviceIdsOpt = Annotated[Optional[str], typer.Option(help="Chips / GPUs to drive, one runner each: ids such as 0 or 0,1,2,3, or all (every chip npu-smi lists, every GPU). Default: the target file's device_id.")]


@handle_errors
def build_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    base: Annotated[Optional[str], typer.Option("--base-image", help="Base image instead of the Dockerfile's default (e.g. centerface-toolkit/base:bookworm from `base-image`).")] = None,
    extra_ca_cert: Annotated[Optional[Path], typer.Option(help="A PEM CA bundle to trust inside the build (hosts behind a TLS-intercepting proxy).")] = None,
    index_url: Annotated[Optional[str], typer.Option(help="A PyPI mirror or index URL for pip inside the build.")] = None,
    no_cache: Annotated[bool, typer.Option(help="Rebuild every layer.")] = False,
) -> None:
    """Build the target's image (docker/<family>.Dockerfile) through the Docker SDK, tagged centerface-toolkit/<target>:<version>."""
    chosen = targets.load(target)
    config = ContainerConfig.of(chosen)
    emulable = backends.get(chosen.backend).emulation is not None
    options = images.BuildOptions(base, extra_ca_cert, index_url, no_cache, without_image=(
        f"`make target={target} MODE=emulate` gives its emulated AP on this host, with no image" if emulable else None))
    say(console, f"building {config.image} from {config.dockerfile_in_context} "
                 f"(base {images.base_image_for(config, options)})")
    built = images.build(config, options, lambda line: console.out(line, highlight=False))
    say(out, f"built {built['image']} ({built['id'][7:19]}, {built['size_bytes'] / 1e6:.0f} MB)")


@handle_errors
def base_image_cmd(
    name: Annotated[str, typer.Option(help="Tag for the image.")] = images.OFFLINE_BASE,
    suite: Annotated[str, typer.Option(help="Debian suite.")] = "bookworm",
    mirror: Annotated[Optional[str], typer.Option(help="Debian mirror URL (default deb.debian.org).")] = None,
    force: Annotated[bool, typer.Option(help="Make it again even if it exists.")] = False,
) -> None:
    """Make a Debian base image with Python from Debian's packages (debootstrap + docker import): for hosts with no image registry."""
    made = base_image.make(name, suite, mirror, force, lambda line: console.out(line, highlight=False))
    say(out, f"{'made' if made['made'] else 'have'} {made['image']} ({made['size_bytes'] / 1e6:.0f} MB)")


def parse_engine(engine: str, address: str | None, workers: int):
    """None for the local engine, else the Ray engine (refusing anything else in one line)."""
    from toolkit.cluster import RayEngine

    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: choose from local, ray")
    if engine == "local":
        if address is not None:
            raise InputError("--address joins a Ray cluster: give --engine ray too")
        return None
    return RayEngine(address, workers)


def parse_device_ids(text: str | None) -> list[int] | str | None:
    """A list of ids, "all", or None (not given)."""
    if text is None or text.strip() == "all":
        return None if text is None else "all"
    ids = whole_numbers(text) or []
    if not ids or any(i < 0 for i in ids):
        raise InputError(f"--device-ids {text!r}: expected numbers 0 or more, such as 0 or 0,1, or all")
    if len(set(ids)) != len(ids):
        raise InputError(f"--device-ids {text!r}: each device once (a device runs one stream of the run)")
    return ids

"""Build a target's image through the Docker SDK, streaming the log; find built images."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import __version__
from toolkit.containers import engine
from toolkit.containers.config import ContainerConfig
from toolkit.containers.context import build_context
from toolkit.errors import InputError, ToolkitError

OFFLINE_BASE = "centerface-toolkit/base:bookworm"
TARGET_LABEL = "io.centerface-toolkit.target"
LOG_TAIL = 15  # lines of a failed step's log shown with the error
_FROM_DEFAULT = re.compile(r"^ARG BASE_IMAGE=(\S+)", re.M)


@dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None  # overrides the target's and the Dockerfile's default
    extra_ca_cert: Path | None = None
    index_url: str | None = None  # a PyPI mirror or index
    no_cache: bool = False
    without_image: str | None = None  # what gives a result on this host with no image (emulation), for hints


def base_image_for(config: ContainerConfig, options: BuildOptions) -> str:
    """The --base-image option, else the target's base_image, else the Dockerfile's ARG default."""
    chosen = options.base_image or config.base_image
    if chosen:
        return chosen
    found = _FROM_DEFAULT.search(config.dockerfile_path().read_text())
    if not found:
        raise InputError(f"{config.dockerfile_path()}: no `ARG BASE_IMAGE=<default>` line")
    return found.group(1)


def build_args(config: ContainerConfig, options: BuildOptions) -> dict[str, str]:
    args = {"BASE_IMAGE": base_image_for(config, options), "TOOLKIT_VERSION": __version__, "TARGET": config.target,
            **config.build_args}
    if options.index_url:
        args["INDEX_URL"] = options.index_url
    return args


def build(config: ContainerConfig, options: BuildOptions, log: Callable[[str], None]) -> dict:
    """Build and tag `config.image`; return its id, size and build arguments."""
    client = engine.client()
    _check_tag_is_ours(client, config)
    args = build_args(config, options)
    context = build_context(options.extra_ca_cert)  # checks the certificate before any pull
    ensure_base(client, args["BASE_IMAGE"], options.without_image, log)
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    step = ""
    stream = client.api.build(
        fileobj=context, custom_context=True, dockerfile=config.dockerfile_in_context, tag=config.image,
        buildargs=args, network_mode="host", rm=True, forcerm=True, nocache=options.no_cache, decode=True,
        labels={TARGET_LABEL: config.target, "io.centerface-toolkit.version": __version__})
    image_id = None
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error", "")
            raise BuildFailed(config.image, step, message.strip(), list(tail))
        text = chunk.get("stream") or chunk.get("status") or ""
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        for line in text.rstrip("\n").splitlines():
            if line.startswith("Step "):
                step, tail = line, deque(maxlen=LOG_TAIL)
            tail.append(line)
            log(line)
    image = client.images.get(image_id or config.image)
    return {"image": config.image, "id": image.id, "size_bytes": image.attrs.get("Size"), "build_args": args}


def _check_tag_is_ours(client, config: ContainerConfig) -> None:
    """The tag a build moves may name only an image the toolkit built (its target label): another image of that
    name is the user's, and is left as it is."""
    from docker.errors import ImageNotFound

    try:
        labels = client.images.get(config.image).labels or {}
    except ImageNotFound:
        return
    if labels.get(TARGET_LABEL) != config.target:
        raise InputError(f"image {config.image}: exists and the toolkit did not build it (no {TARGET_LABEL}="
                         f"{config.target} label); a build would take its name", "docker tag it elsewhere, or remove it")


class BuildFailed(ToolkitError):
    def __init__(self, image: str, step: str, message: str, tail: list[str]) -> None:
        shown = "\n".join(f"    {line}" for line in tail)
        super().__init__(f"building {image} failed at {step or 'the start'}: {message}",
                         f"the step's last lines:\n{shown}" if tail else None)


def ensure_base(client, base: str, without_image: str | None, log: Callable[[str], None]) -> None:
    """The base image is here, or pulled now; if neither, say which image, how to give another, and what
    gives a result with no image at all."""
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(base)
        return
    except ImageNotFound:
        pass
    log(f"pulling base image {base}")
    try:
        client.images.pull(base)
    except APIError as exc:
        reason = (exc.explanation or str(exc)).splitlines()[0]
        raise InputError(f"base image {base} is not on this host and cannot be pulled ({reason})",
                         f"pass --base-image IMAGE; with no registry, `python -m toolkit base-image` makes "
                         f"{OFFLINE_BASE} (Debian's Python, for the CPU targets)"
                         + (f"; {without_image}" if without_image else "")) from None


def require_image(config: ContainerConfig):
    """The built image, or an error that names the build command."""
    from docker.errors import ImageNotFound

    client = engine.client()
    try:
        return client.images.get(config.image)
    except ImageNotFound:
        raise InputError(f"image {config.image} is not built yet",
                         f"python -m toolkit build --target {config.target}") from None

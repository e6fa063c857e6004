"""`serve`: a target's deployment as an HTTP service (here, in its image, or on Ray Serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import targets
from toolkit.cli.common import handle_errors, in_range, log, progress
from toolkit.cli.containers import AddressOpt, DeviceIdsOpt, ModeOpt, parse_device_ids
from toolkit.containers.launch import resolve_mode
from toolkit.errors import InputError
from toolkit.flows.serve import TOKEN_ENV, ServeOptions, prepared, serve_where
from toolkit.paths import default_dataset, runs_dir
from toolkit.serve.app import Limits


@handle_errors
def serve_cmd(
    target: Annotated[str, typer.Option(help="Serve this target's deployment: its run folder's converted model, input, batch size and devices.")] = "cpu",
    from_dir: Annotated[Optional[Path], typer.Option("--from", help="The target's run folder (default runs/<target>); converted first where it holds no converted model.")] = None,
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
    host: Annotated[str, typer.Option(help=f"Listen on this address. Anything but loopback needs a token (--token-file, or ${TOKEN_ENV}).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen on this port (0: a free one, said when bound).")] = 8080,
    token_file: Annotated[Optional[Path], typer.Option(help="A file holding the token requests must bear (Authorization: Bearer <token>).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch requests up to this many (default: the target's batch size).")] = None,
    max_wait_ms: Annotated[float, typer.Option(help="How long a partial batch waits for more requests.")] = 5.0,
    queue: Annotated[Optional[int], typer.Option(help="Requests in flight at most; past it, 429 at once (default: 4 batches a stream, 8 at the least).")] = None,
    max_body_mb: Annotated[int, typer.Option(help="The largest request body, in MiB.")] = 20,
    max_pixels: Annotated[int, typer.Option(help="The largest image, in pixels.")] = 40_000_000,
    min_score: Annotated[float, typer.Option("--min-score", "--threshold", help="Answer faces scoring at least this.")] = 0.5,
    engine: Annotated[str, typer.Option(help="local (uvicorn here or in the target's image) or ray (Ray Serve: replicas over a Ray cluster; needs the [ray] extra).")] = "local",
    address: AddressOpt = None,
    replicas: Annotated[Optional[int], typer.Option(help="--engine ray: replicas (default: one per device, or per 2 CPUs).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root, for an INT8 target converted first (its calibration).")] = None,
) -> None:
    """Serve faces over HTTP: POST /v1/detect (an image's bytes in, its faces out as JSON), /healthz, /readyz,
    /metrics (Prometheus) and /docs. Dynamic batching, a bounded queue (429 past it), graceful drain on SIGTERM."""
    in_range("--min-score", min_score, 0, 1)
    in_range("--max-wait-ms", max_wait_ms, 0, 10_000)
    in_range("--port", port, 0, 65535)
    for option, value in (("--batch-size", batch_size), ("--queue", queue), ("--replicas", replicas),
                          ("--max-body-mb", max_body_mb), ("--max-pixels", max_pixels)):
        if value is not None and value < 1:
            raise InputError(f"{option} {value}: must be 1 or more")
    options = ServeOptions(host, port, token_file, batch_size, max_wait_ms, queue, min_score,
                           Limits(max_body_mb << 20, max_pixels))
    spec = targets.load(target).on_devices(parse_device_ids(device_ids))
    run_dir = from_dir or runs_dir() / spec.name
    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: choose from local, ray")
    if engine == "local" and (address is not None or replicas is not None):
        raise InputError("--address and --replicas go with --engine ray")
    where = resolve_mode(mode, spec)
    with progress() as bar:  # converting first, where the run folder has no converted model
        deployed = prepared(spec, run_dir, where, data or default_dataset(), options, log, bar)
    if engine == "ray":
        from toolkit.flows.serve_ray import serve_on_ray

        serve_on_ray(deployed, options, address, replicas, log)
    else:
        serve_where(deployed, where, options, log)

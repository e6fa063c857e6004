"""`serve`: a target's deployment as an HTTP service (the same runner, preprocessing and decode as `detect`),
on this host under uvicorn, in the target's image for a container target, or on Ray Serve (serve_ray.py).
It binds 127.0.0.1 unless told otherwise; anywhere else it needs a token (a file, or $CENTERFACE_SERVE_TOKEN).
SIGTERM (or Ctrl-C) stops accepting, answers every request already accepted, then exits."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from toolkit import __version__, deployment, reading
from toolkit.errors import InputError
from toolkit.serve.app import Limits, make_app
from toolkit.serve.batcher import Batcher, ObservedRunner, Settings
from toolkit.serve.metrics import Metrics
from toolkit.target import Target

TOKEN_ENV = "CENTERFACE_SERVE_TOKEN"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: a free port, said when bound
    token_file: Path | None = None
    batch_size: int | None = None  # None: the target's
    max_wait_ms: float = 5.0
    limit: int | None = None  # requests in flight at most (None: 4 batches a stream, 8 at the least)
    min_score: float = 0.5
    limits: Limits = Limits()

    def token(self) -> str | None:
        """The token from its file, else the environment; anywhere but loopback, one is required."""
        token = reading.read_text(self.token_file, limit=4096, what="token file").strip() if self.token_file \
            else os.environ.get(TOKEN_ENV, "").strip() or None
        if self.token_file and not token:
            raise InputError(f"{self.token_file}: an empty token file")
        if token is None and not _loopback(self.host):
            raise InputError(f"--host {self.host}: a service reachable from other machines needs a token",
                             f"put one in a file and pass --token-file FILE, or set ${TOKEN_ENV}")
        return token

    def cli_args(self) -> list[str]:
        """The same options as `serve` arguments (a target's image runs them; the token travels as a mounted file)."""
        return ["--host", self.host, "--port", str(self.port), "--max-wait-ms", str(self.max_wait_ms),
                "--min-score", str(self.min_score), *(["--batch-size", str(self.batch_size)] if self.batch_size else []),
                *(["--queue", str(self.limit)] if self.limit else []),
                "--max-body-mb", str(self.limits.body_bytes >> 20), "--max-pixels", str(self.limits.pixels)]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def described(deployed: deployment.Deployment, runner=None) -> dict:
    """What every answer says it came from: the target, its precision in force (as the loaded runner reports it),
    EMULATED where it is."""
    precision = ((runner.reported() if runner else None) or {}).get("precision_in_force") or deployed.target.precision
    return {"target": deployed.target.name, "precision_in_force": precision, "emulated": deployed.emulated,
            "toolkit": __version__}


def serve(deployed: deployment.Deployment, options: ServeOptions, log: Callable[[str], None]) -> None:
    """The service on this host until SIGTERM or Ctrl-C; every accepted request is answered before it ends."""
    import uvicorn

    token = options.token()
    sock = _bound(options.host, options.port)
    about = described(deployed)
    metrics = Metrics()
    batch_size = options.batch_size or deployed.target.batch_sizes[0]
    batcher = Batcher(lambda: ObservedRunner(deployed.runner(), metrics.batch), deployed.target.preprocess,
                      Settings(batch_size, options.min_score, options.limit, options.max_wait_ms / 1e3))

    def loaded() -> None:  # the precision in force is the loaded runner's to say
        about.update(described(deployed, batcher.runner))
        metrics.model(about["target"], about["precision_in_force"], deployed.emulated)

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=_warm, args=(batcher, loaded, log), name="serve-warm", daemon=True).start()
        yield
        await asyncio.to_thread(batcher.stop)  # after uvicorn answered every request in flight

    app = make_app(Local(batcher), about, metrics, options.limits, token, lifespan)
    host, port = sock.getsockname()[:2]
    log(f"serving {deployed.label()} on http://{host}:{port} (POST /v1/detect; ready at /readyz once warmed; "
        f"/metrics, /docs); batches of up to {batch_size}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=None, lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn hands SIGTERM / Ctrl-C back once it has drained: the stop asked for
        pass
    log(f"stopped: {batcher.answered} requests answered, none accepted left unanswered")


class Local:
    """The app's model side on this host: the batcher."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.admit, self.release, self.in_flight = batcher.admit, batcher.release, batcher.in_flight

    async def detect(self, key: str, rgb):
        return await asyncio.wrap_future(self.batcher.submit(key, rgb))

    def ready(self) -> str | None:
        return None if self.batcher.ready else self.batcher.why_unready()


def _warm(batcher: Batcher, loaded: Callable[[], None], log: Callable[[str], None]) -> None:
    try:
        batcher.start()
        loaded()
        log(f"ready: {batcher.limit} requests in flight at most")
    except Exception as exc:  # noqa: BLE001 - /readyz says why, and the service answers 503
        batcher.failure = exc


def _bound(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (so a busy port is one line, and port 0's number is known)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"{host}:{port}: cannot listen there ({exc.strerror})", "pass another --port") from None
    sock.listen(2048)
    return sock


def prepared(target: Target, run_dir: Path, where: str, data: Path | None, options: ServeOptions,
             log: Callable[[str], None], progress=None) -> deployment.Deployment:
    """The deployment in `run_dir` to serve, converted first where it has none (the options checked before)."""
    options.token()
    return deployment.load(target, run_dir, where, data, log, progress)


def serve_where(deployed: deployment.Deployment, where: str, options: ServeOptions, log: Callable[[str], None]) -> None:
    """Serve it where the target runs: here, or in its image."""
    if where != "container":
        serve(deployed, options, log)
        return
    _serve_in_container(deployed.target, deployed.run_dir, options, log)


def _serve_in_container(target: Target, run_dir: Path, options: ServeOptions, log: Callable[[str], None]) -> None:
    """The same command in the target's image: the run folder mounted read-only, the token as a read-only file
    (one written for the container's life where it came from the environment: never a flag value), the host's
    network (the service listens where it was told to)."""
    import tempfile

    from toolkit.containers import launch, runspec

    config = launch.built_image(target, target.device_ids)
    args = ["serve", "--target", target.name, "--from", "/from/run", *options.cli_args(), *launch.device_flags(target)]
    with tempfile.TemporaryDirectory() as private:
        token_file = options.token_file
        if token_file is None and os.environ.get(TOKEN_ENV):
            token_file = Path(private) / "token"
            token_file.write_text(os.environ[TOKEN_ENV])
        mounts = [runspec.Mount(str(run_dir.resolve()), "/from/run", True)]
        if token_file is not None:
            mounts.append(runspec.Mount(str(Path(token_file).resolve()), "/run/centerface-token", True))
            args += ["--token-file", "/run/centerface-token"]
        try:
            launch.serve_in_container(config, args, target.device_ids, log, tuple(mounts))
        except KeyboardInterrupt:  # SIGTERM or Ctrl-C: the container was stopped, and drained, as asked
            log("stopped: the container drained what it had accepted")

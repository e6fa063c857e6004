"""`serve --engine ray`: the same application on Ray Serve. An ingress deployment (the FastAPI app of
toolkit/serve/app.py, as Ray Serve's HTTP proxy routes to it) hands each request's decoded picture (in the request,
through Ray's object store, never a shared file system) to a detector deployment: one replica per device (a GPU, an
NPU) or per `CORES_PER_REPLICA` CPUs, each with the target's deployment loaded once, batching through Ray Serve's own
`@serve.batch` into the toolkit's pipeline. A replica that dies is replaced by Ray Serve; the requests it held are
sent once more to another, else answered 503, and none hangs."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from toolkit import backends, deployment, machine
from toolkit.errors import Unavailable
from toolkit.flows.serve import ServeOptions, described
from toolkit.serve.batcher import Overloaded, Unready
from toolkit.target import Target

APP = "centerface"
CORES_PER_REPLICA = 2


def serve_on_ray(deployed: deployment.Deployment, options: ServeOptions, address: str | None, replicas: int | None,
                 log: Callable[[str], None]) -> None:
    """The service on Ray Serve until SIGTERM or Ctrl-C (then shut down, each replica finishing what it holds)."""
    ray, serve = _ray_serve()
    token = options.token()
    port = options.port or _free_port(options.host)
    backend = backends.get(deployed.target.backend)
    count = replicas or _default_replicas(deployed.target, backend)
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=address, num_cpus=None if address else machine.usable_cores(), include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    try:
        serve.start(http_options={"host": options.host, "port": port}, logging_config={"log_level": "WARNING"})
        serve.run(application(deployed, options, token, count, backend.accelerator), name=APP, route_prefix="/")
        log(f"serving {deployed.label()} on http://{options.host}:{port} with Ray Serve, {count} replicas "
            "(POST /v1/detect, /readyz, /metrics, /docs)")
        log("ready")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C: the stop asked for
        pass
    finally:
        serve.shutdown()
        if started_here:
            ray.shutdown()
    log("stopped: the replicas finished what they held")


def application(deployed: deployment.Deployment, options: ServeOptions, token: str | None, count: int,
                accelerator: str | None):
    """The Ray Serve application: the ingress bound to `count` detector replicas."""
    from ray import serve

    from toolkit.serve.app import make_app
    from toolkit.serve.metrics import Metrics

    metrics = Metrics()
    about = described(deployed)
    metrics.model(about["target"], about["precision_in_force"], deployed.emulated)
    app = make_app(RayModel(), about, metrics, options.limits, token)
    limit = options.limit or max(8, 4 * (options.batch_size or deployed.target.batch_sizes[0]) * count)

    @serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0})  # it waits on the replicas: no core of its own
    @serve.ingress(app)
    class Ingress:
        def __init__(self, detector) -> None:
            RayModel.bind(detector, limit)

    actor = {"num_gpus": 1} if accelerator == "GPU" else {"resources": {accelerator: 1}} if accelerator else \
        {"num_cpus": min(CORES_PER_REPLICA, machine.usable_cores() / count)}
    detector = serve.deployment(Detector, name="detector", num_replicas=count, ray_actor_options=actor,
                                max_ongoing_requests=max(2, 2 * (options.batch_size or deployed.target.batch_sizes[0])))
    return Ingress.bind(detector.bind(deployed.target, str(deployed.run_dir), deployed.emulated, options.batch_size,
                                      options.min_score, options.max_wait_ms / 1e3))


class RayModel:
    """The app's model side in the ingress: admits requests up to its limit, sends each picture to a detector
    replica (once more to another should the first die). Its state is the ingress process's module state, set by
    the ingress at start: the app and the ingress class reach Ray Serve's processes in separate pickles, which
    share the module (importable here and there) but not an object."""

    state: dict = {"handle": None, "limit": 0, "held": set(), "keys": iter(range(1 << 62))}

    @classmethod
    def bind(cls, handle, limit: int) -> None:
        cls.state.update(handle=handle, limit=limit)

    def admit(self) -> str:
        state = self.state
        if state["handle"] is None:
            raise Unready("the replicas are still starting")
        if len(state["held"]) >= state["limit"]:
            raise Overloaded(1)
        key = str(next(state["keys"]))
        state["held"].add(key)
        return key

    def release(self, key: str) -> None:
        self.state["held"].discard(key)

    async def detect(self, key: str, rgb):
        from ray.exceptions import RayActorError

        try:
            for attempt in range(2):
                try:
                    return await self.state["handle"].infer.remote(rgb)
                except RayActorError as exc:  # the replica died holding it: once more, on another
                    if attempt:
                        raise Unready(f"the replica serving it died, and so did the next ({type(exc).__name__})")
        finally:
            self.release(key)

    def ready(self) -> str | None:
        return None if self.state["handle"] is not None else "the replicas are still starting"

    def in_flight(self) -> int:
        return len(self.state["held"])


class Detector:
    """One replica: the target's deployment loaded once, batched by Ray Serve, inferred by the toolkit's pipeline."""

    def __init__(self, target: Target, run_dir: str, emulated: bool, batch_size: int | None, min_score: float,
                 max_wait_s: float) -> None:
        from ray import serve

        target = target.on_devices("all") if backends.get(target.backend).accelerator else target  # what Ray gave it
        self.deployed = deployment.load(target, Path(run_dir), "emulate" if emulated else "host", None, print)
        self.runner = self.deployed.runner()
        self.min_score = min_score
        size = batch_size or target.batch_sizes[0]
        self.infer = serve.batch(max_batch_size=size, batch_wait_timeout_s=max_wait_s)(self._batch)

    async def _batch(self, pictures: list) -> list:
        """A batch Ray Serve gathered, through the pipeline as `detect` runs it; faces in the pictures' order."""
        import asyncio

        from toolkit import pipeline

        found = {}
        await asyncio.to_thread(pipeline.run, [(str(i), rgb) for i, rgb in enumerate(pictures)], self.runner,
                                self.deployed.target.preprocess, lambda key, det, _o: found.__setitem__(key, det),
                                batch_size=len(pictures), threshold=self.min_score)
        return [found[str(i)] for i in range(len(pictures))]


def _default_replicas(target, backend) -> int:
    if backend.accelerator:
        return len(target.device_ids) if isinstance(target.device_ids, tuple) else 1
    return max(1, machine.usable_cores() // CORES_PER_REPLICA)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ray_serve():
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise Unavailable(f"--engine ray needs Ray Serve ({exc.name} is missing)", "pip install -e '.[ray]'") from None
    return ray, serve


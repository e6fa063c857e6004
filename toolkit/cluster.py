"""`--engine ray`: one run sharded over a Ray cluster, each worker (a Ray actor) driving its own devices.

The driver splits the images into shards; every actor builds the target's runner for what Ray gave it
(its CPUs; one GPU through `num_gpus`; one Ascend chip through Ray's `NPU` resource, which sets
ASCEND_RT_VISIBLE_DEVICES) and runs the toolkit's own pipeline on each shard it is handed, returning
detections. The driver writes predictions exactly as a local run does, so the files are the same bytes.
An actor that dies (killed, its node lost) has its shards handed to the others; a replacement is
started while restarts are left. Ray is optional (`pip install -e '.[ray]'`), imported only here.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import backends, machine
from toolkit.errors import InputError, ToolkitError, Unavailable
from toolkit.postprocess import Detections
from toolkit.target import Target

NAMESPACE = "centerface"
IN_FLIGHT = 2  # shards queued per actor: the next one is ready when one finishes


@dataclass(frozen=True)
class RayEngine:
    address: str | None = None  # None: a local Ray with this machine's CPUs
    workers: int = 2
    shard_size: int = 16  # images per task, rounded up to whole batches
    restarts: int = 2  # replacement actors started when actors die

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"--workers {self.workers}: must be 1 or more")

    def run(self, items: list[tuple[str, Path]], target: Target, artefact: Path, batch_size: int,
            on_result: Callable[[str, Detections, dict | None], None], keep: set[str],
            on_progress: Callable[[int], None] | None = None,
            on_bad: Callable[[str, str], None] | None = None) -> ClusterTimes:
        """Every image through the cluster; `on_result(key, detections, outputs)` on the driver (outputs
        only for the keys in `keep`). Returns the wall time and each worker's share."""
        ray = _ray()
        started_here = not ray.is_initialized()
        if started_here:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                ray.init(address=self.address, num_cpus=None if self.address else machine.usable_cores(),
                         namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError) as exc:
                raise InputError(f"--address {self.address}: cannot join the Ray cluster "
                                 f"({str(exc).strip().splitlines()[0][:160]})",
                                 "is the head running? a cluster with token authentication: export "
                                 "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=$(ray get-auth-token)") from None
        try:
            return _Driver(self, ray, target, artefact, batch_size, keep, on_bad is not None).run(
                items, on_result, on_progress, on_bad)
        finally:
            if started_here:
                ray.shutdown()


@dataclass
class ClusterTimes:
    wall: float = 0.0
    images: int = 0
    per_worker: list[dict] = field(default_factory=list)
    retried_shards: int = 0
    cores_per_worker: int = 0
    shard_size: int = 0
    startup: float = 0.0  # seconds to start the actors and build their runners (not in the rate)

    def summary(self, engine: RayEngine) -> dict:
        """result.json's `engine`: where it ran, and each worker's images and rate."""
        return {"engine": "ray", "address": engine.address or "local", "workers": engine.workers,
                "cores_per_worker": self.cores_per_worker, "shard_size": self.shard_size,
                "images": self.images, "startup_s": round(self.startup, 3), "wall_s": round(self.wall, 3),
                "images_per_s": round(self.images / self.wall, 2) if self.wall else None,
                "retried_shards": self.retried_shards, "per_worker": self.per_worker}


class ShardWorker:
    """What runs in each Ray actor: the target's runner on the devices Ray gave it, the pipeline per shard."""

    def __init__(self, target: Target, artefact: str, batch_size: int, cores: int, skip_bad: bool) -> None:
        os.environ[machine.CORES_ENV] = str(cores)  # the runner's layout and the pipeline's workers fit this actor
        self.target, self.batch_size, self.skip_bad = target, batch_size, skip_bad
        backend = backends.require(target)
        self.runner = backend.runner(Path(artefact), target.on_devices("all") if backend.accelerator else target)

    def where(self) -> dict:
        return {"node": machine.describe()["hostname"], "runs_in": machine.runs_in(), "pid": os.getpid(),
                "devices": self.runner.info.streams}

    def run(self, items: list[tuple[str, str]], keep: set[str]) -> dict:
        from toolkit import pipeline

        results: list[tuple[str, Detections, dict | None]] = []
        bad: dict[str, str] = {}

        def on_result(key: str, det: Detections, outputs: dict) -> None:
            results.append((key, det, {n: a.copy() for n, a in outputs.items()} if key in keep else None))

        times = pipeline.run([(k, Path(p)) for k, p in items], self.runner, self.target.preprocess, on_result,
                             batch_size=self.batch_size, threshold=self.target.threshold,
                             on_bad=bad.__setitem__ if self.skip_bad else None)
        return {"results": results, "bad": bad, "wall": times.wall}


class _Driver:
    def __init__(self, engine: RayEngine, ray, target: Target, artefact: Path, batch_size: int, keep: set[str],
                 skip_bad: bool) -> None:
        self.engine, self.ray, self.keep = engine, ray, keep
        backend = backends.get(target.backend)
        total = ray.cluster_resources().get("CPU", 1)
        self.cores = max(1, int(total // engine.workers))
        options: dict = {"num_cpus": self.cores, "max_restarts": 0, "max_task_retries": 0}
        if backend.accelerator == "GPU":
            options["num_gpus"] = 1
        elif backend.accelerator:
            options["resources"] = {backend.accelerator: 1}
        self.prefix = f"centerface-{os.getpid()}-worker"  # two drivers on one cluster never clash
        self.make = lambda i: ray.remote(ShardWorker).options(name=f"{self.prefix}-{i}", **options).remote(
            target, str(artefact.resolve()), batch_size, self.cores, skip_bad)
        self.shard = -(-engine.shard_size // batch_size) * batch_size  # whole batches
        self.actors: dict[int, object] = {}
        self.stats: dict[int, dict] = {}
        self.restarts = engine.restarts

    def _start(self, i: int) -> None:
        actor = self.make(i)
        self.actors[i] = actor
        self.stats[i] = {"worker": f"{self.prefix}-{i}", "images": 0, "busy_s": 0.0, "shards": 0, "died": False,
                         **self.ray.get(actor.where.remote())}

    def run(self, items, on_result, on_progress, on_bad) -> ClusterTimes:
        ray, engine = self.ray, self.engine
        from ray.exceptions import RayActorError, RayTaskError

        times = ClusterTimes(cores_per_worker=self.cores, shard_size=self.shard)
        started = time.perf_counter()
        try:
            for i in range(engine.workers):
                self._start(i)
        except RayTaskError as exc:  # the runner could not be built in the actor: the toolkit's own error
            raise _cause(exc) from None
        times.startup = time.perf_counter() - started
        start = time.perf_counter()
        shards = deque((n, [(k, str(p)) for k, p in items[s: s + self.shard]])
                       for n, s in enumerate(range(0, len(items), self.shard)))
        inflight: dict[object, tuple[int, list, int]] = {}  # task -> (shard number, shard, actor)
        try:
            while shards or inflight:
                for i, actor in list(self.actors.items()):
                    while shards and sum(1 for *_, a in inflight.values() if a == i) < IN_FLIGHT:
                        number, shard = shards.popleft()
                        inflight[actor.run.remote(shard, self.keep)] = (number, shard, i)
                (ready,), _ = ray.wait(list(inflight), num_returns=1)
                number, shard, i = inflight.pop(ready)
                try:
                    done = ray.get(ready)
                except RayTaskError as exc:
                    raise _cause(exc) from None
                except RayActorError:  # the actor died: its shard goes to the others
                    shards.appendleft((number, shard))
                    times.retried_shards += 1
                    self._lost(i)
                    continue
                for key, det, outputs in done["results"]:
                    on_result(key, det, outputs)
                for key, reason in done["bad"].items():
                    on_bad(key, reason)
                stats = self.stats[i]
                stats["images"] += len(done["results"])
                stats["busy_s"] += done["wall"]
                stats["shards"] += 1
                times.images += len(done["results"])
                if on_progress:
                    on_progress(len(shard))
        finally:
            for actor in self.actors.values():
                ray.kill(actor)
        times.wall = time.perf_counter() - start
        times.per_worker = [{**s, "busy_s": round(s["busy_s"], 3),
                             "images_per_s": round(s["images"] / s["busy_s"], 2) if s["busy_s"] else None}
                            for s in self.stats.values()]
        return times

    def _lost(self, i: int) -> None:
        """Mark actor `i` dead; start a replacement while restarts are left; fail when none is alive."""
        if i not in self.actors:
            return
        del self.actors[i]
        self.stats[i]["died"] = True
        if self.restarts > 0:
            self.restarts -= 1
            self._start(max(self.stats) + 1)
        if not self.actors:
            raise ToolkitError("every Ray worker died; no restarts left", "see `ray status` and the workers' logs")


def check_engine_mode(cluster: RayEngine | None, where: str, tta: bool = False) -> None:
    """The Ray engine drives the run from the host: with --mode container the target's image joins the
    cluster as a worker instead; an emulation runs in this process. Its workers run single-scale passes."""
    if cluster is not None and tta:
        raise InputError("--engine ray with --tta: the Ray workers run single-scale passes", "leave out --engine ray")
    if cluster is not None and where != "host":
        raise InputError(f"--engine ray with --mode {where}: the driver runs on the host; the target's image joins "
                         "the cluster as a worker (see the README)", "pass --mode host")


def _cause(exc) -> BaseException:
    """A task's own exception (a toolkit error raised in the actor) rather than Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else ToolkitError(str(exc).splitlines()[0][:200])


def _ray():
    try:
        import ray
    except ImportError:
        raise Unavailable("--engine ray needs Ray (pip install -e '.[ray]')") from None
    return ray

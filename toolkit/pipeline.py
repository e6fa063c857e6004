"""The pipelined end-to-end runner: decode + preprocess in worker threads ahead of inference,
decode + NMS + file writing in a thread behind it, bounded queues in between.

OpenCV and ONNX Runtime release the GIL, so threads overlap for real. Results are keyed, so their
order does not matter; any error (or Ctrl-C) stops every stage and is re-raised, and since every
file is written atomically nothing half-written is left behind.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.backends.base import Runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess, Transform
from toolkit.errors import InputError
from toolkit.postprocess import Detections, decode

_DONE = object()


@dataclass
class Prepared:
    key: str
    tensor: np.ndarray  # CHW float32
    transform: Transform
    read_s: float
    pre_s: float
    started: float  # perf_counter when reading began (for end-to-end latency)


@dataclass
class StageTimes:
    """Seconds per image (read, preprocess, postprocess) and per batch (infer)."""

    read: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)
    infer: list[tuple[int, float]] = field(default_factory=list)  # (batch size, seconds)
    postprocess: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # per image, read start -> result written
    wall: float = 0.0
    images: int = 0

    def summary(self) -> dict:
        infer_s = sum(s for _, s in self.infer)
        return {
            "images": self.images, "wall_s": round(self.wall, 3),
            "images_per_s": round(self.images / self.wall, 2) if self.wall else None,
            "mean_ms": {
                "read": _mean_ms(self.read), "preprocess": _mean_ms(self.preprocess),
                "infer": round(1e3 * infer_s / max(1, self.images), 3), "postprocess": _mean_ms(self.postprocess),
            },
        }


def _mean_ms(values: list[float]) -> float | None:
    return round(1e3 * float(np.mean(values)), 3) if values else None


def _prepare(key: str, path: Path, pre: Preprocess) -> Prepared:
    t0 = time.perf_counter()
    rgb = read_rgb(path)
    t1 = time.perf_counter()
    tensor, transform = pre(rgb)
    return Prepared(key, tensor, transform, t1 - t0, time.perf_counter() - t1, t0)


def _batches(prepared: Iterator[Prepared], batch_size: int) -> Iterator[list[Prepared]]:
    """Group consecutive items of equal input shape (native sizes differ) into batches."""
    batch: list[Prepared] = []
    for item in prepared:
        if batch and (len(batch) == batch_size or item.tensor.shape != batch[0].tensor.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}: must be 1 or more")


def run(
    items: Iterable[tuple[str, Path]],
    runner: Runner,
    pre: Preprocess,
    on_result: Callable[[str, Detections, dict[str, np.ndarray]], None],
    batch_size: int = 1,
    threshold: float = 0.05,
    workers: int = 2,
    prefetch: int = 8,
    on_progress: Callable[[int], None] | None = None,
) -> StageTimes:
    """Run every (key, image path) through preprocess -> infer -> decode -> on_result."""
    check_batch_size(batch_size)
    times = StageTimes()
    post_q: queue.Queue = queue.Queue(maxsize=max(2, prefetch // max(1, batch_size)))
    stop = threading.Event()
    errors: list[BaseException] = []

    def post_worker() -> None:
        while True:
            job = post_q.get()
            if job is _DONE:
                return
            if stop.is_set():
                continue
            try:
                batch, outputs = job
                for i, item in enumerate(batch):
                    t0 = time.perf_counter()
                    one = {name: out[i] for name, out in outputs.items()}
                    dets = decode(one["heatmap"], one["scale"], one["offset"], one["landmarks"],
                                  item.transform, threshold)
                    on_result(item.key, dets, one)
                    t1 = time.perf_counter()
                    times.postprocess.append(t1 - t0)
                    times.latency.append(t1 - item.started)
                if on_progress:
                    on_progress(len(batch))
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)
                stop.set()

    poster = threading.Thread(target=post_worker, name="postprocess", daemon=True)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preprocess")
    start = time.perf_counter()
    poster.start()
    try:
        for batch in _batches(_prefetched(items, pre, pool, prefetch, stop), batch_size):
            if errors:
                break
            for item in batch:
                times.read.append(item.read_s)
                times.preprocess.append(item.pre_s)
            tensor = np.stack([item.tensor for item in batch]) if len(batch) > 1 else batch[0].tensor[None]
            t0 = time.perf_counter()
            outputs = runner.infer(tensor)
            times.infer.append((len(batch), time.perf_counter() - t0))
            times.images += len(batch)
            _put(post_q, (batch, outputs), errors)
    except BaseException:
        stop.set()
        raise
    finally:
        _put(post_q, _DONE, [], force=True)
        poster.join()
        pool.shutdown(wait=True, cancel_futures=True)
        times.wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return times


def _put(q: queue.Queue, job: object, errors: list, force: bool = False) -> None:
    """Block on a full queue, but give up if the consumer failed (unless forced: the sentinel)."""
    while not errors or force:
        try:
            q.put(job, timeout=0.1)
            return
        except queue.Full:
            continue


def _prefetched(items: Iterable[tuple[str, Path]], pre: Preprocess, pool: ThreadPoolExecutor,
                depth: int, stop: threading.Event) -> Iterator[Prepared]:
    """Submit up to `depth` images ahead and yield them in order as they complete."""
    pending: list[Future] = []
    it = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < depth:
            nxt = next(it, None)
            if nxt is None:
                exhausted = True
                break
            pending.append(pool.submit(_prepare, nxt[0], nxt[1], pre))
        if not pending or stop.is_set():
            return
        yield pending.pop(0).result()

"""The pipelined end-to-end runner: decode + preprocess in worker threads ahead of inference (as
many as the cores inference leaves), `runner.streams` inference threads in the middle (one per device
or CPU stream), decode + NMS + file writing in post-processing threads behind them, bounded queues in
between.

Workers hand over uint8 HWC images; one assembler thread writes each batch into a reused buffer in the
runner's layout (the runner's own, pinned, where it offers one): float32 NCHW made in that one copy,
or the uint8 NHWC an AIPP model takes as it is, so nothing is converted on the host for those. Two
assembled batches wait ahead of the streams, so a device that finishes starts its next batch at once
instead of waiting for its batch to be copied. At batch size 1 the workers make the one-image batch
themselves.

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

from toolkit import machine
from toolkit.backends.base import Runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess, Transform, batch_shape, into_batch
from toolkit.errors import InputError
from toolkit.postprocess import Detections, decode

_DONE = object()


@dataclass(frozen=True)
class Span:
    """How long a step took: wall seconds, and the CPU seconds its thread spent (its cost,
    without the time it waited for a core)."""

    wall: float
    cpu: float


class Stopwatch:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def lap(self) -> Span:
        wall, cpu = time.perf_counter(), time.thread_time()
        span = Span(wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return span


@dataclass
class Prepared:
    key: str
    image: np.ndarray  # HWC uint8 at the network's input size; at batch size 1 the runner's one-image batch
    transform: Transform
    read: Span
    preprocess: Span
    started: float  # perf_counter when reading began (for end-to-end latency)


@dataclass
class StageTimes:
    """Spans per image (read, preprocess, postprocess) and seconds per batch (infer)."""

    read: list[Span] = field(default_factory=list)
    preprocess: list[Span] = field(default_factory=list)
    infer: list[tuple[int, float]] = field(default_factory=list)  # (batch size, seconds)
    postprocess: list[Span] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # per image, read start -> result written
    wall: float = 0.0
    images: int = 0
    workers: int = 0  # preprocessing threads
    post_workers: int = 0
    devices: list[dict] = field(default_factory=list)  # per device: images, busy seconds (runner.devices())

    def summary(self) -> dict:
        infer_s = sum(s for _, s in self.infer)
        found = {
            "images": self.images, "wall_s": round(self.wall, 3),
            "images_per_s": round(self.images / self.wall, 2) if self.wall else None,
            "mean_ms": {
                "read": _mean_ms(self.read), "preprocess": _mean_ms(self.preprocess),
                "infer": round(1e3 * infer_s / max(1, self.images), 3), "postprocess": _mean_ms(self.postprocess),
            },
            "workers": {"preprocess": self.workers, "postprocess": self.post_workers},
        }
        if self.devices:
            found["devices"] = self.per_device()
        return found

    def per_device(self) -> list[dict]:
        """Each device's images, its rate over the run's wall time, and how busy it was."""
        return [{**d, "images_per_s": round(d["images"] / self.wall, 2) if self.wall else None,
                 "busy": round(d["busy_s"] / self.wall, 3) if self.wall else None} for d in self.devices]


def _mean_ms(spans: list[Span]) -> float | None:
    return round(1e3 * float(np.mean([s.wall for s in spans])), 3) if spans else None


def _prepare(key: str, path: Path, pre: Preprocess, layout: str | None) -> Prepared:
    """Read and preprocess one image; with `layout`, as the one-image batch a runner takes."""
    watch = Stopwatch()
    started = watch.wall
    rgb = read_rgb(path)
    read = watch.lap()
    image, transform = pre.image_u8(rgb)
    if layout is not None:
        image = into_batch([image], layout)
    return Prepared(key, image, transform, read, watch.lap(), started)


def _batches(prepared: Iterator[Prepared], batch_size: int, shapes: int = 2) -> Iterator[list[Prepared]]:
    """Batches of equal input shape: each shape (a native size, a bucket) fills its own batch. At most
    `shapes x batch_size` images wait (native sizes are many: each would hold images): past that the
    oldest partial batch goes as it is; what is left is flushed at the end."""
    pending: dict[tuple[int, ...], list[Prepared]] = {}
    waiting = 0
    for item in prepared:
        batch = pending.setdefault(item.image.shape, [])
        batch.append(item)
        waiting += 1
        if len(batch) == batch_size:
            waiting -= batch_size
            yield pending.pop(item.image.shape)
        elif waiting > shapes * batch_size:
            oldest = pending.pop(next(iter(pending)))
            waiting -= len(oldest)
            yield oldest
    yield from pending.values()


def check_batch_size(batch_size: int, sizes: list[tuple[int, int]] | None = None) -> None:
    """A batch size of 1 or more whose batches fit this machine: at `sizes` (width, height; the largest
    counts), the three float32 batches a run holds at the least (one inferring, two waiting)."""
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}: must be 1 or more")
    available = machine.available_memory()
    if not sizes or available is None:
        return
    width, height = max(sizes, key=lambda s: s[0] * s[1])
    need = 3 * batch_size * 3 * height * width * np.dtype(np.float32).itemsize
    if need > available:
        raise InputError(f"batch size {batch_size}: its batches need about {need / 2**30:.1f} GiB at {width}x{height} "
                         f"(three float32 batches of {batch_size} x 3 x {height} x {width}), more than the "
                         f"{available / 2**30:.1f} GiB available here", "a smaller --batch-size")


MAX_WORKERS = 6  # past this, threads contend for the GIL. Host-feed capacity on a 16-core Xeon (4 instant
# devices, 800x800, batch 1 / 16, images/s): 4 workers 580 / 741, 6 692-730 / 679-777, 8 608-654 / 608-698,
# 12 584 / 629, 16 539 / 524


def default_workers(runner: Runner) -> int:
    """Preprocessing threads: the cores inference leaves free (a device's runner leaves them all), at
    least 2 so reading one image overlaps decoding another, at most MAX_WORKERS."""
    return min(MAX_WORKERS, max(2, machine.usable_cores() - runner.host_cores))


class BatchBuffers:
    """Batch buffers reused across batches (and across runs, when one is passed to each), per input size;
    at most `keep` kept while free (native sizes are many): one per stream, and the two waiting."""

    def __init__(self, runner: Runner, batch_size: int) -> None:
        self.runner, self.batch_size, self.keep = runner, batch_size, max(1, runner.streams) + 2
        self.free: list[tuple[tuple[int, int], np.ndarray]] = []
        self.lock = threading.Lock()

    def take(self, hw: tuple[int, int]) -> np.ndarray:
        with self.lock:
            for i in reversed(range(len(self.free))):  # the latest given back: its pages are the warmest
                if self.free[i][0] == hw:
                    return self.free.pop(i)[1]
        return self.runner.empty_batch(batch_shape(self.runner.layout, self.batch_size, *hw))

    def give(self, hw: tuple[int, int], buffer: np.ndarray) -> None:
        with self.lock:
            self.free.append((hw, buffer))
            del self.free[: max(0, len(self.free) - self.keep)]

    def warm(self, hw: tuple[int, int]) -> None:
        """Every buffer a run can hold for input size `hw`, made and written once now: a fresh buffer's
        first write faults its pages in (on a 2-core VM, a second of system time for a card's six)."""
        if self.batch_size == 1:  # the workers make one-image batches themselves
            return
        made = [self.take(hw) for _ in range(self.keep)]
        for buffer in made:
            buffer.fill(0)
            self.give(hw, buffer)


def run(
    items: Iterable[tuple[str, Path]],
    runner: Runner,
    pre: Preprocess,
    on_result: Callable[[str, Detections, dict[str, np.ndarray]], None],
    batch_size: int = 1,
    threshold: float = 0.05,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_bad: Callable[[str, str], None] | None = None,
    buffers: BatchBuffers | None = None,
) -> StageTimes:
    """Run every (key, image path) through preprocess -> infer -> decode -> on_result (called from
    several threads at once). An image that cannot be read stops the run, unless `on_bad(key, reason)`
    is given: then it is reported and skipped. `workers`: preprocessing threads (default: from cores).
    `buffers`: batch buffers of `runner` at `batch_size` kept from an earlier run (default: made as needed)."""
    check_batch_size(batch_size)
    streams = max(1, runner.streams)
    workers = workers or default_workers(runner)
    post_workers = max(1, workers // 2)
    prefetch = max(4 * workers, batch_size * (streams + 1))  # decoded ahead: every worker busy, a batch ready per stream
    times = StageTimes(workers=workers, post_workers=post_workers)
    ready: queue.Queue = queue.Queue(maxsize=1)  # with the one the assembler holds: two batches wait for the streams
    post_q: queue.Queue = queue.Queue(maxsize=max(post_workers + streams, prefetch // batch_size))  # results waiting
    stop = threading.Event()
    errors: list[BaseException] = []
    buffers = buffers or BatchBuffers(runner, batch_size)
    if buffers.runner is not runner or buffers.batch_size != batch_size:
        raise ValueError("pipeline.run: `buffers` were made for another runner or batch size")

    def failed(exc: BaseException) -> None:  # surfaced by the main thread
        errors.append(exc)
        stop.set()

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
                    watch = Stopwatch()
                    one = {name: out[i] for name, out in outputs.items()}
                    dets = decode(one["heatmap"], one["scale"], one["offset"], one["landmarks"],
                                  item.transform, threshold)
                    on_result(item.key, dets, one)
                    span = watch.lap()
                    times.postprocess.append(span)
                    times.latency.append(watch.wall - item.started)
                if on_progress:
                    on_progress(len(batch))
            except BaseException as exc:
                failed(exc)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preprocess")
    def skipped(key: str, reason: str) -> None:
        on_bad(key, reason)
        if on_progress:
            on_progress(1)

    one = runner.layout if batch_size == 1 else None
    batches = _batches(_prefetched(items, pre, one, pool, prefetch, stop, skipped if on_bad else None), batch_size,
                       max(2, len(pre.buckets)))  # every bucket fills its batch

    def assemble() -> None:
        """Each batch in the runner's layout (at batch size 1 the workers made it), queued for the streams."""
        try:
            for batch in batches:
                times.read.extend(item.read for item in batch)
                times.preprocess.extend(item.preprocess for item in batch)
                if batch_size == 1:
                    job = (batch, batch[0].image, None)
                else:
                    hw = batch[0].image.shape[:2]
                    buffer = buffers.take(hw)
                    job = (batch, into_batch([item.image for item in batch], runner.layout, buffer), (hw, buffer))
                if not _put(ready, job, stop):
                    return
            for _ in range(streams):
                _put(ready, _DONE, stop)
        except BaseException as exc:
            failed(exc)

    lock = threading.Lock()  # guards `times`

    def infer_loop() -> None:
        while (job := _get(ready, stop)) is not _DONE:
            batch, tensor, buffer = job
            t0 = time.perf_counter()
            try:
                outputs = runner.infer(tensor)
            finally:
                if buffer is not None:
                    buffers.give(*buffer)
            with lock:
                times.infer.append((len(batch), time.perf_counter() - t0))
                times.images += len(batch)
            _put(post_q, (batch, outputs), stop)

    def stream_worker() -> None:
        try:
            infer_loop()
        except BaseException as exc:
            failed(exc)

    assembler = threading.Thread(target=assemble, name="assemble", daemon=True)
    posters = [threading.Thread(target=post_worker, name=f"postprocess-{i}", daemon=True) for i in range(post_workers)]
    others = [threading.Thread(target=stream_worker, name=f"infer-{i}", daemon=True) for i in range(1, streams)]
    devices_before = {d["device"]: d for d in runner.devices()}
    start = time.perf_counter()
    for thread in (assembler, *posters):
        thread.start()
    try:
        for thread in others:
            thread.start()
        infer_loop()  # the main thread is stream 0, so Ctrl-C lands here
    except BaseException:
        stop.set()
        raise
    finally:
        for thread in (*others, assembler):
            thread.join()
        for _ in posters:
            _put(post_q, _DONE, None)
        for poster in posters:
            poster.join()
        pool.shutdown(wait=True, cancel_futures=True)
        times.wall = time.perf_counter() - start
        times.devices = _since(runner.devices(), devices_before)
    if errors:
        raise errors[0]
    return times


def _since(now: list[dict], before: dict[str, dict]) -> list[dict]:
    """Per-device counts of this run only (a runner counts over its life)."""
    found = []
    for d in now:
        earlier = before.get(d["device"], {"images": 0, "busy_s": 0.0})
        found.append({"device": d["device"], "images": d["images"] - earlier["images"],
                      "busy_s": round(d["busy_s"] - earlier["busy_s"], 3)})
    return found


def _put(q: queue.Queue, job: object, stop: threading.Event | None) -> bool:
    """Block on a full queue, but give up (False) once `stop` is set; `stop` None: until it is put."""
    while stop is None or not stop.is_set():
        try:
            q.put(job, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    """The next job, or _DONE once `stop` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


def _prefetched(items: Iterable[tuple[str, Path]], pre: Preprocess, layout: str | None, pool: ThreadPoolExecutor,
                depth: int, stop: threading.Event,
                skipped: Callable[[str, str], None] | None = None) -> Iterator[Prepared]:
    """Submit up to `depth` images ahead and yield them in order as they complete (an unreadable
    image goes to `skipped` when given, else its error is raised)."""
    pending: list[tuple[str, Future]] = []
    it = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < depth:
            nxt = next(it, None)
            if nxt is None:
                exhausted = True
                break
            pending.append((nxt[0], pool.submit(_prepare, nxt[0], nxt[1], pre, layout)))
        if not pending or stop.is_set():
            return
        key, future = pending.pop(0)
        try:
            prepared = future.result()
        except InputError as exc:
            if skipped is None:
                raise
            skipped(key, exc.message)
            continue
        yield prepared

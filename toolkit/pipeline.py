"""The pipelined end-to-end runner: decode + preprocess in worker threads ahead of inference (as
many as the cores inference leaves), `runner.info.streams` inference threads in the middle (one per device
or CPU stream), decode + NMS + file writing in post-processing threads behind them, bounded queues in
between.

Workers hand over uint8 HWC images; one assembler thread writes each batch into a reused buffer in the
runner's layout (the runner's own, pinned, where it offers one): float32 NCHW made in that one copy,
or the uint8 NHWC an AIPP model takes as it is, so nothing is converted on the host for those. Two
assembled batches wait ahead of the streams, so a device that finishes starts its next batch at once
instead of waiting for its batch to be copied. At batch size 1 the workers make the one-image batch
themselves.

With test-time augmentation each image is several inputs (its passes: passes.py), merged once its last is
post-processed; the upscaled passes run in a second round, on the images that need them.

OpenCV and ONNX Runtime release the GIL, so threads overlap for real. Results are keyed, so their
order does not matter; any error (or Ctrl-C) stops every stage and is re-raised, and since every
file is written atomically nothing half-written is left behind. An image is refused before it is inferred
where its own size would need more memory than is free (a model that takes any size), and a device error is
put down to the images of its batch, named with the whole cause: with `on_bad` they are skipped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit import machine
from toolkit.backends.base import Runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess, Transform, batch_shape, into_batch
from toolkit.data.tta import TtaPlan, View
from toolkit.errors import DeviceError, InputError, ToolkitError
from toolkit.passes import PassCollector
from toolkit.postprocess import Detections, decode

_DONE = object()
# An item a source yields where it has nothing more for now (a service between requests): the images read before
# it are batched at once, partial batches too, and nothing is read ahead of it meanwhile.
FLUSH = ("", None)
# Host memory one inference at an input's own size takes per input pixel: ONNX Runtime FP32, measured as the
# peak resident growth at 800x800, 1600x1600 and 2400x2400 (186 bytes a pixel each), rounded up.
INFER_BYTES_PER_PIXEL = 200


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


Source = Path | np.ndarray  # an image file, or a picture already decoded (a video's frame)


@dataclass
class Prepared:
    key: str
    name: str  # as errors name it: the file, or the key of a decoded picture
    image: np.ndarray  # HWC uint8 at the network's input size; at batch size 1 the runner's one-image batch
    transform: Transform
    read: Span
    preprocess: Span
    started: float  # perf_counter when reading began (for end-to-end latency)
    views: tuple[View, ...] = ()  # TTA: the image's passes, this item being pass `index` of them
    index: int = 0


@dataclass
class Batch:
    """A batch assembled for the streams: its images, the tensor in the runner's layout, and the reused buffer
    it was written into (None at batch size 1: the worker made the one-image batch)."""

    items: list[Prepared]
    tensor: np.ndarray
    buffer: tuple[tuple[int, int], np.ndarray] | None


@dataclass
class Inferred:
    """A batch's outputs, waiting for post-processing."""

    items: list[Prepared]
    outputs: dict[str, np.ndarray]


@dataclass
class StageTimes:
    """Spans per image (read, preprocess, postprocess) and seconds per batch (infer)."""

    read: list[Span] = field(default_factory=list)
    preprocess: list[Span] = field(default_factory=list)
    infer: list[tuple[int, float]] = field(default_factory=list)  # (batch size, seconds)
    postprocess: list[Span] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # per image, read start -> result written
    wall: float = 0.0
    images: int = 0  # whole images handed on
    passes: int = 0  # inputs inferred (TTA: several an image)
    tta: dict | None = None  # TTA: what the passes were (PassCollector.summary)
    workers: int = 0  # preprocessing threads
    post_workers: int = 0
    devices: list[dict] = field(default_factory=list)  # per device: images, busy seconds (runner.devices())

    def then(self, later: StageTimes) -> StageTimes:
        """This run's times followed by a later run's (TTA's second round): spans joined, counts and wall added."""
        joined = {name: getattr(self, name) + getattr(later, name)
                  for name in ("read", "preprocess", "infer", "postprocess", "latency")}
        devices = [{**d, "images": d["images"] + e["images"], "busy_s": round(d["busy_s"] + e["busy_s"], 3)}
                   for d, e in zip(self.devices, later.devices)]
        return StageTimes(**joined, wall=self.wall + later.wall, images=self.images + later.images,
                          passes=self.passes + later.passes, workers=self.workers, post_workers=self.post_workers,
                          devices=devices)

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


def check_fits(name: str, hw: tuple[int, int], batch_size: int) -> None:
    """An image inferred at its own size (`hw`, the model's input) fits the memory free now, else one line
    naming the image and the figures."""
    available = machine.available_memory()
    need = INFER_BYTES_PER_PIXEL * hw[0] * hw[1] * batch_size
    if available is not None and need > available:
        raise InputError(f"{name}: inference at its own size ({hw[1]} x {hw[0]}"
                         + (f", in batches of {batch_size}" if batch_size > 1 else "")
                         + f") needs about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB is free here",
                         "--preprocess letterbox --size 1024x1024 infers every image at one size; --skip-bad skips it")


def twins_batch(batch_size: int, runner: Runner, plan: TtaPlan | None) -> int:
    """The batch size a run uses: TTA's mirrored twins share a batch with their originals (at least 2), where
    the runner takes batches of 2."""
    low, high = runner.info.batch
    if plan is None or not plan.flip or batch_size >= 2 or low > 2 or (high is not None and high < 2):
        return batch_size
    return 2


MAX_WORKERS = 6  # past this, threads contend for the GIL: `bench --target sim-310 --device-ids all --capacity`
# on a 16-core host, per worker count (docs/results.md, "host feed")


def default_workers(runner: Runner) -> int:
    """Preprocessing threads: the cores inference leaves free (a device's runner leaves them all), at
    least 2 so reading one image overlaps decoding another, at most MAX_WORKERS."""
    return min(MAX_WORKERS, max(2, machine.usable_cores() - runner.info.host_cores))


class BatchBuffers:
    """Batch buffers reused across batches (and across runs, when one is passed to each), per input size;
    at most `keep` kept while free (native sizes are many): one per stream, and the two waiting."""

    def __init__(self, runner: Runner, batch_size: int) -> None:
        self.runner, self.batch_size, self.keep = runner, batch_size, max(1, runner.info.streams) + 2
        self.free: list[tuple[tuple[int, int], np.ndarray]] = []
        self.lock = threading.Lock()

    def take(self, hw: tuple[int, int]) -> np.ndarray:
        with self.lock:
            for i in reversed(range(len(self.free))):  # the latest given back: its pages are the warmest
                if self.free[i][0] == hw:
                    return self.free.pop(i)[1]
        return self.runner.empty_batch(batch_shape(self.runner.info.layout, self.batch_size, *hw))

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


class Pipeline:
    """One run of preprocess -> infer -> decode -> `on_result`, its stages below in the order data flows
    through them: read + preprocess (worker pool) -> batches by input shape -> assemble (one thread) ->
    infer (one thread per stream; the caller's thread is stream 0, so Ctrl-C lands there) -> post-process
    (threads) -> `on_result` (called from several threads at once)."""

    def __init__(self, runner: Runner, pre: Preprocess, on_result: Callable[[str, Detections, dict], None],
                 batch_size: int = 1, threshold: float = 0.05, workers: int | None = None,
                 on_progress: Callable[[int], None] | None = None, on_bad: Callable[[str, str], None] | None = None,
                 buffers: BatchBuffers | None = None, passes: PassCollector | None = None) -> None:
        check_batch_size(batch_size)
        self.passes = passes
        batch_size = twins_batch(batch_size, runner, passes.plan if passes else None)
        self.runner, self.pre, self.on_result, self.batch_size, self.threshold = runner, pre, on_result, batch_size, threshold
        self.on_progress, self.on_bad = on_progress, on_bad
        self.streams = max(1, runner.info.streams)
        self.workers = workers or default_workers(runner)
        self.post_workers = max(1, self.workers // 2)
        # decoded ahead: every worker busy, a batch ready per stream
        self.prefetch = max(4 * self.workers, batch_size * (self.streams + 1))
        self.buffers = buffers or BatchBuffers(runner, batch_size)
        if self.buffers.runner is not runner or self.buffers.batch_size != batch_size:
            raise ValueError("pipeline.run: `buffers` were made for another runner or batch size")
        self.times = StageTimes(workers=self.workers, post_workers=self.post_workers)
        self.times_lock = threading.Lock()  # guards every append to `times`: several threads record at once
        self.ready: queue.Queue = queue.Queue(maxsize=1)  # with the one the assembler holds: two batches wait
        self.inferred: queue.Queue = queue.Queue(maxsize=max(self.post_workers + self.streams, self.prefetch // batch_size))
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.failed: set[str] = set()  # images a device error was put down to (skipped with on_bad)

    # 1. read + preprocess, in the worker pool
    def _prepare(self, key: str, source: Source) -> list[Prepared]:
        """Read and preprocess one image (TTA: each of its passes); at batch size 1, as the one-image batch the
        runner takes."""
        watch = Stopwatch()
        started = watch.wall
        name = key if isinstance(source, np.ndarray) else str(source)
        fits = self._fits(name) if self.runner.info.input_size is None else None
        if isinstance(source, np.ndarray):
            if fits:
                fits(source.shape[1], source.shape[0])
            rgb = source
        else:
            rgb = read_rgb(source, fits)
        read = watch.lap()
        seen = () if self.passes is None else self.passes.views(rgb.shape[1], rgb.shape[0])
        if self.passes is None:
            made = [(*self.pre.image_u8(rgb), ())]
        else:
            if self.passes.upscaled:
                self.passes.expect(key, len(seen))
            made = [(view.image(rgb), view.transform, seen) for view in seen]
        if self.batch_size == 1:
            made = [(into_batch([image], self.runner.info.layout), t, seen) for image, t, seen in made]
        preprocess = watch.lap()
        return [Prepared(key, name, image, t, read, preprocess, started, seen, i)
                for i, (image, t, seen) in enumerate(made)]

    def _fits(self, name: str) -> Callable[[int, int], None]:
        """For a model that takes any size (this image's own): the image's largest input must fit the memory
        free, checked from its header before it is decoded."""
        def check(width: int, height: int) -> None:
            seen = self.passes.views(width, height) if self.passes is not None else ()
            inputs = [v.transform for v in seen] or [self.pre.transform(width, height)]
            largest = max(inputs, key=lambda t: t.in_width * t.in_height)
            check_fits(name, (largest.in_height, largest.in_width), self.batch_size)
        return check

    def _prefetched(self, items: Iterable[tuple[str, Source]], pool: ThreadPoolExecutor) -> Iterator[Prepared]:
        """Up to `prefetch` images submitted ahead, yielded in order as they complete (an unreadable image
        goes to `on_bad` when given, else its error is raised); a FLUSH is passed on in its place, and nothing
        is read past it until it is."""
        pending: deque[tuple[str, Future | None]] = deque()
        it = iter(items)
        while True:
            while len(pending) < self.prefetch and (not pending or pending[-1] is not FLUSH) \
                    and (nxt := next(it, None)) is not None:
                pending.append(FLUSH if nxt is FLUSH else (nxt[0], pool.submit(self._prepare, *nxt)))
            if not pending or self.stop.is_set():
                return
            if pending[0] is FLUSH:
                pending.popleft()
                yield FLUSH
                continue
            key, future = pending.popleft()
            try:
                yield from future.result()
            except InputError as exc:
                if self.on_bad is None:
                    raise
                self.on_bad(key, exc.message)
                self._advance(1)

    # 2. batches of one input shape
    def _batched(self, prepared: Iterator[Prepared]) -> Iterator[list[Prepared]]:
        """Each shape (a native size, a bucket) fills its own batch. At most `shapes x batch_size` images
        wait (native sizes are many: each would hold images): past that the oldest partial batch goes as
        it is; what is left is flushed at the end."""
        size, shapes = self.batch_size, max(2, len(self.pre.buckets))  # every bucket fills its batch
        pending: dict[tuple[int, ...], list[Prepared]] = {}
        waiting = 0
        for item in prepared:
            if item is FLUSH:  # nothing more for now: what waits goes as it is
                yield from pending.values()
                pending, waiting = {}, 0
                continue
            batch = pending.setdefault(item.image.shape, [])
            batch.append(item)
            waiting += 1
            if len(batch) == size:
                waiting -= size
                yield pending.pop(item.image.shape)
            elif waiting > shapes * size:
                oldest = pending.pop(next(iter(pending)))
                waiting -= len(oldest)
                yield oldest
        yield from pending.values()

    # 3. assemble: each batch in the runner's layout, queued for the streams
    def _assemble(self, items: Iterable[tuple[str, Source]], pool: ThreadPoolExecutor) -> None:
        try:
            for batch in self._batched(self._prefetched(items, pool)):
                with self.times_lock:  # per image: its first pass carries the image's times
                    self.times.read.extend(item.read for item in batch if item.index == 0)
                    self.times.preprocess.extend(item.preprocess for item in batch if item.index == 0)
                if not _put(self.ready, self._tensor_of(batch), self.stop):
                    return
            for _ in range(self.streams):
                _put(self.ready, _DONE, self.stop)
        except BaseException as exc:
            self._failed(exc)

    def _tensor_of(self, batch: list[Prepared]) -> Batch:
        if self.batch_size == 1:  # the worker made it
            return Batch(batch, batch[0].image, None)
        hw = batch[0].image.shape[:2]
        buffer = self.buffers.take(hw)
        return Batch(batch, into_batch([item.image for item in batch], self.runner.info.layout, buffer), (hw, buffer))

    # 4. infer, one loop per stream
    def _infer_loop(self) -> None:
        while (job := _get(self.ready, self.stop)) is not _DONE:
            t0 = time.perf_counter()
            try:
                outputs = self.runner.infer(job.tensor)
            except DeviceError as exc:
                self._batch_failed(job.items, exc.message)
                continue
            except ToolkitError:  # the model's own fault (outputs of other shapes), not the images'
                raise
            except Exception as exc:  # a runtime's own exception type
                self._batch_failed(job.items, " ".join(f"{type(exc).__name__}: {exc}".split()))
                continue
            finally:
                if job.buffer is not None:
                    self.buffers.give(*job.buffer)
            with self.times_lock:
                self.times.infer.append((len(job.items), time.perf_counter() - t0))
                self.times.passes += len(job.items)
            _put(self.inferred, Inferred(job.items, outputs), self.stop)

    def _batch_failed(self, items: list[Prepared], cause: str) -> None:
        """A device error on a batch: its images named with the whole cause; skipped with `on_bad`, else raised."""
        images = list(dict.fromkeys((item.key, item.name) for item in items))
        where = "this image" if len(images) == 1 else f"the batch of {len(images)} images holding it"
        if self.on_bad is None:
            raise InputError(f"{images[0][1]}: inference failed on {where} ({cause})",
                             "--skip-bad skips it" + (f"; the others: {', '.join(p for _, p in images[1:])}"
                                                      if len(images) > 1 else "")) from None
        for key, path in images:
            with self.times_lock:
                first = key not in self.failed
                self.failed.add(key)
            if first:
                self.on_bad(key, f"{path}: inference failed on {where} ({cause})")
                self._advance(1)

    def _stream(self) -> None:
        try:
            self._infer_loop()
        except BaseException as exc:
            self._failed(exc)

    # 5. post-process: decode, hand each image's detections to on_result
    def _postprocess(self) -> None:
        while (job := self.inferred.get()) is not _DONE:
            if self.stop.is_set():
                continue
            try:
                done = sum(self._postprocess_one(item, {name: out[i] for name, out in job.outputs.items()})
                           for i, item in enumerate(job.items))
                self._advance(done)
            except BaseException as exc:
                self._failed(exc)

    def _postprocess_one(self, item: Prepared, outputs: dict[str, np.ndarray]) -> bool:
        """Decode one pass; hand on the image's detections once it is whole (True then: TTA waits for its
        last pass). An image another of whose passes failed is not handed on."""
        if item.key in self.failed:
            return False
        watch = Stopwatch()
        found = decode(outputs["heatmap"], outputs["scale"], outputs["offset"], outputs["landmarks"], item.transform,
                       self.threshold)
        whole = (found, outputs) if self.passes is None else self.passes.add(item.key, item.index, item.views,
                                                                              found, outputs)
        if whole is not None:
            self.on_result(item.key, *whole)
        span = watch.lap()
        with self.times_lock:
            self.times.postprocess.append(span)
            if whole is not None:
                self.times.latency.append(watch.wall - item.started)
                self.times.images += 1
        return whole is not None

    def _advance(self, images: int) -> None:
        if self.on_progress:
            self.on_progress(images)

    def _failed(self, exc: BaseException) -> None:  # surfaced by the caller's thread
        self.errors.append(exc)
        self.stop.set()

    def run(self, items: Iterable[tuple[str, Source]]) -> StageTimes:
        """Every (key, image file or decoded picture) through the stages; the first error (or Ctrl-C) stops them all
        and is raised."""
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="preprocess")
        assembler = threading.Thread(target=self._assemble, args=(items, pool), name="assemble", daemon=True)
        posters = [threading.Thread(target=self._postprocess, name=f"postprocess-{i}", daemon=True)
                   for i in range(self.post_workers)]
        streams = [threading.Thread(target=self._stream, name=f"infer-{i}", daemon=True) for i in range(1, self.streams)]
        devices_before = {d["device"]: d for d in self.runner.devices()}
        start = time.perf_counter()
        for thread in (assembler, *posters):
            thread.start()
        try:
            for thread in streams:
                thread.start()
            self._infer_loop()  # stream 0
        except BaseException:
            self.stop.set()
            raise
        finally:
            for thread in (*streams, assembler):
                thread.join()
            for _ in posters:
                _put(self.inferred, _DONE, None)
            for poster in posters:
                poster.join()
            pool.shutdown(wait=True, cancel_futures=True)
            self.times.wall = time.perf_counter() - start
            self.times.devices = _since(self.runner.devices(), devices_before)
        if self.errors:
            raise self.errors[0]
        return self.times


def run(items: Iterable[tuple[str, Source]], runner: Runner, pre: Preprocess,
        on_result: Callable[[str, Detections, dict[str, np.ndarray]], None], tta: TtaPlan | None = None,
        **options) -> StageTimes:
    """Run every (key, image file or decoded picture) through the pipeline (options: those of `Pipeline`).
    `items` may be a generator: it is read in the assembler thread, ahead of inference (a video's frames are
    decoded so). An image that cannot be read stops the run, unless `on_bad(key, reason)` is given: then it is
    reported and skipped.
    `workers`: preprocessing threads (default: from cores). `buffers`: batch buffers of `runner` at
    `batch_size` kept from an earlier run (default: made as needed). With `tta`, two rounds through the
    stages: every image's first passes, then the upscaled passes of the images that need them."""
    if tta is None:
        return Pipeline(runner, pre, on_result, **options).run(items)
    items = list(items)
    passes = PassCollector(tta, pre)
    times = Pipeline(runner, pre, on_result, passes=passes, **options).run(items)
    passes.start_upscaled()
    second = [(key, path) for key, path in items if key in passes.second]
    if second:
        times = times.then(Pipeline(runner, pre, on_result, passes=passes, **options).run(second))
    times.tta = passes.summary(times.images)
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

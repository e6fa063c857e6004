"""The model side of the service: each request's picture admitted (at most `limit` in flight: past that the
service answers 429 at once, so memory stays bounded), then inferred by the toolkit's own pipeline on the
deployment's runner, which batches them dynamically: a batch goes when it is full or when no request has come
for `max_wait_s` (the source yields FLUSH), and the runner's streams are kept busy as `bench` keeps them."""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from toolkit import pipeline
from toolkit.backends.base import Runner
from toolkit.data.preprocess import Preprocess
from toolkit.errors import DeviceError
from toolkit.postprocess import Detections

_END = ("", None)


class Overloaded(Exception):
    """Every slot is taken: the request is turned away now (429), to be retried after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the service is at its limit of requests in flight; retry in {retry_after} s")
        self.retry_after = retry_after


class Unready(Exception):
    """The model is not loaded and warmed yet, or its pipeline stopped (503)."""


@dataclass(frozen=True)
class Settings:
    batch_size: int
    threshold: float
    limit: int | None  # requests in flight (admitted, not yet answered) at most; None: 4 batches a stream, 8 at least
    max_wait_s: float = 0.005  # how long a partial batch waits for more requests


class ObservedRunner(Runner):
    """A runner that reports each batch's size (the batch-size histogram) and otherwise is the runner it wraps."""

    def __init__(self, inner: Runner, observe: Callable[[int], None]) -> None:
        self.inner, self.observe = inner, observe
        self.name, self.source, self.info = inner.name, inner.source, inner.info

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.observe(len(batch))
        return self.inner._infer(batch)

    def empty_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.inner.empty_batch(shape)

    def reported(self) -> dict:
        return self.inner.reported()

    def devices(self) -> list[dict]:
        return self.inner.devices()

    def _release(self) -> None:
        self.inner.close()


MODEL_NICE = 10  # how much lower the model's threads run than the HTTP side's (see Batcher.start)


class Batcher:
    def __init__(self, make_runner: Callable[[], Runner], pre: Preprocess, settings: Settings) -> None:
        self.make_runner, self.pre, self.settings = make_runner, pre, settings
        self.runner: Runner | None = None
        self.limit = settings.limit or 8  # the runner's streams decide the default, once it is loaded
        self.requests: queue.Queue = queue.Queue()
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.keys = itertools.count()
        self.thread: threading.Thread | None = None
        self.ready = False
        self.failure: BaseException | None = None
        self.answered = 0
        self.started = time.monotonic()

    # admission: from the request handlers, before a request's body is read
    def admit(self) -> str:
        """A slot for one request (its key), or Overloaded / Unready at once."""
        if not self.ready:
            raise Unready(self.why_unready())
        with self.lock:
            if len(self.futures) >= self.limit:
                raise Overloaded(self.retry_after())
            key = str(next(self.keys))
            self.futures[key] = Future()
        return key

    def submit(self, key: str, rgb: np.ndarray) -> Future:
        """Queue the admitted request's picture; its future gets the faces (or the device's error)."""
        with self.lock:
            future = self.futures[key]
        self.requests.put((key, rgb))
        return future

    def release(self, key: str) -> None:
        """Give back the slot of an admitted request that never reached `submit` (a bad body)."""
        with self.lock:
            self.futures.pop(key, None)

    def in_flight(self) -> int:
        with self.lock:
            return len(self.futures)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue's length at the rate answered so far (1 at least)."""
        rate = self.answered / max(1e-3, time.monotonic() - self.started)
        return max(1, int(self.limit / rate) + 1) if rate else 1

    def why_unready(self) -> str:
        if self.failure is not None:
            return f"the model's pipeline stopped ({type(self.failure).__name__}: {self.failure})"
        return "the model is still being loaded and warmed"

    # the pipeline: a thread of its own, for the service's life
    def start(self) -> None:
        """Load and warm the runner (a batch at its input size), then start the pipeline; ready from then on.
        Called in a thread of its own, which first lowers its priority: every thread the model makes from here
        (the runtime's pool, the pipeline's workers and streams) inherits it, so the HTTP side (the main thread)
        answers refusals and health checks at once while inference takes every core."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MODEL_NICE)
        except (OSError, AttributeError):
            pass
        self.runner = self.make_runner()
        self.limit = self.settings.limit or max(8, 4 * self.settings.batch_size * max(1, self.runner.info.streams))
        self._warm()
        self.thread = threading.Thread(target=self._run, name="serve-pipeline", daemon=True)
        self.thread.start()
        self.ready = True
        self.started = time.monotonic()

    def _warm(self) -> None:
        height, width = self.runner.info.input_size or (self.pre.height or 640, self.pre.width or 640)
        batch = self.runner.empty_batch((max(self.runner.info.batch[0], 1), *(
            (height, width, 3) if self.runner.info.channels_last else (3, height, width))))
        batch.fill(0)
        self.runner.infer(batch)

    def _run(self) -> None:
        try:
            pipeline.run(self._source(), self.runner, self.pre, self._answer, batch_size=self.settings.batch_size,
                         threshold=self.settings.threshold, on_bad=self._fail_one)
        except BaseException as exc:  # noqa: BLE001 - the service says so (503) and fails what waits
            self.failure, self.ready = exc, False
        with self.lock:
            waiting, self.futures = list(self.futures.values()), {}
        for future in waiting:
            future.set_exception(Unready(self.why_unready()))

    def _source(self) -> Iterator[tuple[str, np.ndarray]]:
        """Requests as they come; FLUSH once none has come for max_wait after the oldest not yet batched."""
        oldest = None
        while True:
            wait = None if oldest is None else max(0.0, self.settings.max_wait_s - (time.monotonic() - oldest))
            try:
                item = self.requests.get(timeout=wait)
            except queue.Empty:
                oldest = None
                yield pipeline.FLUSH
                continue
            if item is _END:
                return
            oldest = oldest or time.monotonic()
            yield item

    def _answer(self, key: str, faces: Detections, _outputs: dict) -> None:
        with self.lock:
            future = self.futures.pop(key, None)
            self.answered += 1
        if future is not None:
            future.set_result(faces)

    def _fail_one(self, key: str, why: str) -> None:
        with self.lock:
            future = self.futures.pop(key, None)
        if future is not None:
            future.set_exception(DeviceError(why))

    def stop(self) -> None:
        """Answer what was accepted, then end the pipeline and release the runner."""
        self.ready = False
        self.requests.put(_END)
        if self.thread is not None:
            self.thread.join()
        if self.runner is not None:
            self.runner.close()

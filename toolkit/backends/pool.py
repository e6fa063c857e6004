"""Many devices behind one runner: every chip of a card, every GPU, every CPU session.

The pipeline calls `infer` from `streams` threads at once; each call takes a free device, runs on it
and gives it back, so every device is kept busy. Images and busy seconds are counted per device
(result.json's per-device figures).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from toolkit.backends.base import Runner, RunnerInfo
from toolkit.errors import InputError
from toolkit.target import Target


def chosen_devices(target: Target, default: int, every: Callable[[], list[int]], kind: str) -> list[int]:
    """The device ids a run uses: --device-ids as given, `all` for `every()` device here, else the
    target file's `default`."""
    ids = target.device_ids
    if ids == "all":
        found = every()
        if not found:
            raise InputError(f"target {target.name}: --device-ids all, but no {kind} is listed here")
        return found
    if not ids:
        return [default]
    listed = every()  # where the devices can be listed (none listed: not checked here)
    missing = [i for i in ids if listed and i not in listed]
    if missing:
        raise InputError(f"target {target.name}: --device-ids {','.join(map(str, ids))}: no {kind} {missing[0]} here "
                         f"(listed: {','.join(map(str, listed))})")
    return list(ids)


def pool_over(ids: list[int], make: Callable[[int], Runner], kind: str) -> DevicePool:
    """One runner per id (made in turn; those made are closed if a later one fails), labelled `<kind> <id>`."""
    runners: list[Runner] = []
    try:
        for i in ids:
            runners.append(make(i))
    except BaseException:
        for runner in runners:
            runner.close()
        raise
    return DevicePool(runners, [f"{kind} {i}" for i in ids])


class DevicePool(Runner):
    """One runner per device (all of one model and layout), `labels` naming the devices."""

    def __init__(self, runners: list[Runner], labels: list[str]) -> None:
        if not runners or len(runners) != len(labels):
            raise ValueError("a device pool needs one label per runner, and at least one runner")
        self.runners, self.labels = runners, labels
        first = runners[0]
        self.name, self.source = first.name, first.source
        self.info = RunnerInfo.of_children(runners, each_stream=True)
        self._free: queue.Queue[int] = queue.Queue()
        for i, runner in enumerate(runners):
            for _ in range(runner.info.streams):
                self._free.put(i)
        self._images = [0] * len(runners)
        self._busy = [0.0] * len(runners)
        self._lock = threading.Lock()

    def check_input(self, batch: np.ndarray) -> None:
        """Each device's own runner checks the batch."""

    def empty_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.runners[0].empty_batch(shape)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        i = self._free.get()
        try:
            start = time.perf_counter()
            outputs = self.runners[i].infer(batch)
            with self._lock:
                self._busy[i] += time.perf_counter() - start
                self._images[i] += len(batch)
            return outputs
        finally:
            self._free.put(i)

    def devices(self) -> list[dict]:
        with self._lock:
            return [{"device": label, "images": n, "busy_s": round(busy, 3)}
                    for label, n, busy in zip(self.labels, self._images, self._busy)]

    def _release(self) -> None:
        for runner in getattr(self, "runners", []):
            runner.close()

"""The load test of `bench --serve`: a bounded async client (httpx) keeps `concurrency` requests of real WIDER
images in flight for a fixed time per level, and counts what came back: answers per second, latency percentiles
of the answered, and each refusal by status with how fast it came. Its clients wait the Retry-After a refusal
names before they send again, as HTTP clients should. It starts the service itself (a real process
on a free port of 127.0.0.1, stopped by SIGTERM when done) unless given a URL, and samples the service's memory."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError

READY_WAIT_S = 300  # a service converting its model first, then warming it
WARM_ROUNDS = 4  # answers per image (or per client, when there are more clients) before the levels are measured
WARM_MAX_S = 300.0


@dataclass
class Level:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # answered (200)
    refused: dict[str, list[float]] = field(default_factory=dict)  # status -> how long each refusal took
    wall: float = 0.0
    rss_mb: tuple[float, float] | None = None  # the service's memory before the level and at its most during it

    def summary(self) -> dict:
        answered = np.array(self.latencies) * 1e3
        found = {"concurrency": self.concurrency, "seconds": round(self.wall, 2), "answered": len(self.latencies),
                 "throughput": round(len(self.latencies) / self.wall, 2) if self.wall else 0.0,
                 **{f"p{q}_ms": round(float(np.percentile(answered, q)), 1) if len(answered) else None
                    for q in (50, 95, 99)},
                 "errors": {status: len(times) for status, times in self.refused.items()},
                 "refusal_p99_ms": {status: round(float(np.percentile(np.array(times) * 1e3, 99)), 1)
                                    for status, times in self.refused.items()}}
        if self.rss_mb is not None:
            found["rss_mb"] = {"before": self.rss_mb[0], "peak": self.rss_mb[1],
                               "growth": round(self.rss_mb[1] - self.rss_mb[0], 1)}
        return found


async def _level(url: str, bodies: list[bytes], concurrency: int, seconds: float, headers: dict,
                 enough: int | None = None) -> Level:
    """`concurrency` clients for `seconds`, or until `enough` requests are answered."""
    import httpx

    level = Level(concurrency, seconds)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(first: int) -> None:
            sent = first
            while time.perf_counter() < deadline and (enough is None or len(level.latencies) < enough):
                t0 = time.perf_counter()
                wait = 0.0
                try:
                    response = await client.post(url, content=bodies[sent % len(bodies)], headers=headers)
                    status, wait = str(response.status_code), _retry_after(response.headers)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                took = time.perf_counter() - t0
                (level.latencies if status == "200" else level.refused.setdefault(status, [])).append(took)
                sent += concurrency
                if wait:  # as an HTTP client should: back after the Retry-After a refusal names
                    await asyncio.sleep(min(wait, max(0.0, deadline - time.perf_counter())))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        level.wall = time.perf_counter() - started
    return level


def _retry_after(headers) -> float:
    """The seconds a 429 / 503 asks the client to wait (Retry-After as a number), else 0."""
    value = headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


def run_levels(url: str, bodies: list[bytes], levels: list[int], seconds: float, token: str | None,
               rss: Callable[[], float | None], log: Callable[[str], None]) -> dict:
    """A warm-up (see `warm_up`), then each concurrency level in turn against `url` (its /v1/detect), with the
    service's memory sampled: {"warm_up": ..., "levels": [...]}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    warmed = warm_up(url, bodies, levels[0], headers, log)
    found = []
    for concurrency in levels:
        before = rss()
        peak = [before or 0.0]
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(rss, peak, stop), daemon=True)
        sampler.start()
        level = asyncio.run(_level(f"{url}/v1/detect", bodies, concurrency, seconds, headers))
        stop.set()
        sampler.join()
        level.rss_mb = (round(before, 1), round(max(peak), 1)) if before is not None else None
        found.append(level.summary())
        log(f"concurrency {concurrency}: {found[-1]['throughput']} answered/s, p50 {found[-1]['p50_ms']} ms, "
            f"p99 {found[-1]['p99_ms']} ms, refused {refusals(found[-1])}")
    return {"warm_up": warmed, "levels": found}


def warm_up(url: str, bodies: list[bytes], concurrency: int, headers: dict, log: Callable[[str], None]) -> dict:
    """WARM_ROUNDS answers per image at the first level's concurrency, not measured: the service's runtime
    meets each image size at the depth the load keeps, so no level's latency or memory counts first-time costs.
    Counted in answers, not seconds, so a machine busy with other work warms as far as an idle one."""
    enough = WARM_ROUNDS * max(len(bodies), concurrency)
    warmed = asyncio.run(_level(f"{url}/v1/detect", bodies, concurrency, WARM_MAX_S, headers, enough))
    log(f"warm-up: {len(warmed.latencies)} answered in {warmed.wall:.1f} s at concurrency {concurrency}")
    return {"concurrency": concurrency, "answered": len(warmed.latencies), "seconds": round(warmed.wall, 2)}


def refusals(level: dict) -> str:
    """A level's refusals in words: `12 x 429 (p99 3.1 ms)` per status, or 0."""
    return ", ".join(f"{n} x {status} (p99 {level['refusal_p99_ms'][status]} ms)"
                     for status, n in level["errors"].items()) or "0"


def _sample(rss: Callable[[], float | None], peak: list[float], stop: threading.Event) -> None:
    while not stop.wait(0.2):
        now = rss()
        if now is not None:
            peak.append(now)


class Service:
    """`python -m toolkit serve ARGS` on a free port of 127.0.0.1, until SIGTERM; its URL once it is ready."""

    def __init__(self, args: list[str], log: Callable[[str], None]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", *args, "--host", "127.0.0.1",
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.said = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._url(log)

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.said:
                self.lines.append(line.rstrip())
                self.said.notify_all()
        with self.said:
            self.lines.append("")  # the service ended
            self.said.notify_all()

    def _url(self, log: Callable[[str], None]) -> str:
        """The URL it said it listens on, once it says it is ready (it may convert and warm first)."""
        deadline = time.monotonic() + READY_WAIT_S
        with self.said:
            while time.monotonic() < deadline and not (self.lines and self.lines[-1] == "" and self.proc.poll() is not None):
                url = next((m.group(1) for line in self.lines if (m := re.search(r"on (http://127\.0\.0\.1:\d+)", line))),
                           None)
                if url and any(line.startswith("ready") for line in self.lines):
                    log(f"service ready at {url}")
                    return url
                self.said.wait(1.0)
        last = next((line for line in reversed(self.lines) if line), "no output")
        self.stop()
        raise ToolkitError(f"the service did not become ready: {last}")

    def last_words(self, wait_s: float = 30) -> str:
        """The last line it said, once its output has ended."""
        with self.said:
            self.said.wait_for(lambda: self.lines and self.lines[-1] == "" and self.proc.poll() is not None, wait_s)
            return next((line for line in reversed(self.lines) if line), "")

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

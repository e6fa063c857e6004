"""Per-stage benchmarks in the spirit of the Ascend benchmark tool: data read, preprocess, pure
inference, post-process and the pipelined end to end, each as throughput and latency percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import pipeline
from toolkit.backends.base import Runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.postprocess import decode

STAGES = ("read", "preprocess", "infer", "postprocess", "e2e")


def stats(seconds: list[float], images_per_sample: int = 1) -> dict:
    """Throughput (images/s, one worker's view) and latency percentiles in ms per sample."""
    arr = np.asarray(seconds, dtype=np.float64)
    if arr.size == 0:
        return {"throughput": None, "samples": 0}
    ms = arr * 1e3
    return {
        "throughput": round(images_per_sample * arr.size / arr.sum(), 2),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "samples": int(arr.size),
    }


def timed(fn: Callable[[], object], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pure_inference(runner: Runner, batch: np.ndarray, warmup: int, iters: int) -> dict:
    """The accelerator's view (the guide's 'Interface throughputRate'): one batch, run repeatedly."""
    return stats(timed(lambda: runner.infer(batch), warmup, iters), len(batch))


def real_batch(tensors: list[np.ndarray], batch_size: int) -> np.ndarray:
    """`batch_size` real preprocessed images (repeated if fewer were given)."""
    return np.stack([tensors[i % len(tensors)] for i in range(batch_size)])


def bench_batch(runner: Runner, items: list[tuple[str, Path]], pre: Preprocess, batch_size: int,
                threshold: float, warmup: int, iters: int, on_progress: Callable[[int], None] | None = None) -> dict:
    """Every stage at one batch size over the same real images."""
    read_s, pre_s, post_s, tensors, transforms = [], [], [], [], []
    for _, path in items:
        t0 = time.perf_counter()
        rgb = read_rgb(path)
        t1 = time.perf_counter()
        tensor, transform = pre(rgb)
        read_s.append(t1 - t0)
        pre_s.append(time.perf_counter() - t1)
        tensors.append(tensor)
        transforms.append(transform)
    infer = pure_inference(runner, real_batch(tensors, batch_size), warmup, iters)
    for tensor, transform in zip(tensors, transforms):
        out = runner.infer(tensor[None])
        t0 = time.perf_counter()
        decode(out["heatmap"][0], out["scale"][0], out["offset"][0], out["landmarks"][0], transform, threshold)
        post_s.append(time.perf_counter() - t0)
    pipeline.run(items[: 2 * batch_size], runner, pre, lambda *a: None, batch_size=batch_size,
                 threshold=threshold)  # warm the pipeline's threads and buffers
    times = pipeline.run(items, runner, pre, lambda *a: None, batch_size=batch_size, threshold=threshold,
                         on_progress=on_progress)
    e2e = stats(times.latency)
    e2e["throughput"] = round(times.images / times.wall, 2)  # the pipeline's real rate, not 1/latency
    stages = {"read": stats(read_s), "preprocess": stats(pre_s), "infer": infer,
              "postprocess": stats(post_s), "e2e": e2e}
    stages["e2e_over_infer"] = round(e2e["throughput"] / infer["throughput"], 3)
    return stages

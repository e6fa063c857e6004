"""Per-stage benchmarks in the spirit of the Ascend benchmark tool: data read, preprocess, pure
inference, post-process and the pipelined end to end, each as throughput and latency percentiles."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import pipeline
from toolkit.pipeline import Span
from toolkit.backends.base import Runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess, into_batch
from toolkit.data.tta import TtaPlan

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


def stage_stats(spans: list[Span]) -> dict:
    """Wall-time stats of a pipeline stage, plus its mean CPU cost per image."""
    result = stats([s.wall for s in spans])
    result["cpu_mean_ms"] = round(1e3 * float(np.mean([s.cpu for s in spans])), 3) if spans else None
    return result


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
    """The accelerator's view (the guide's 'Interface throughputRate'): one batch, run repeatedly
    by each of the runner's streams at once; throughput is images over wall time."""
    streams = max(1, runner.info.streams)
    per_stream = max(1, iters // streams)
    latencies: list[list[float]] = [[] for _ in range(streams)]
    warmed = threading.Barrier(streams + 1)

    def stream(i: int) -> None:
        timed(lambda: runner.infer(batch), warmup, 0)
        warmed.wait()
        latencies[i] = timed(lambda: runner.infer(batch), 0, per_stream)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    warmed.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    result = stats([s for per in latencies for s in per], len(batch))
    result["throughput"] = round(len(batch) * streams * per_stream / wall, 2)
    result["streams"] = streams
    return result


def real_batch(images: list[np.ndarray], batch_size: int, layout: str) -> np.ndarray:
    """`batch_size` real preprocessed uint8 HWC images (repeated if fewer were given), in a runner's layout."""
    return into_batch([images[i % len(images)] for i in range(batch_size)], layout)


def bench_batch(runner: Runner, items: list[tuple[str, Path]], pre: Preprocess, batch_size: int,
                threshold: float, warmup: int, iters: int, on_progress: Callable[[int], None] | None = None,
                tta: TtaPlan | None = None) -> dict:
    """Every stage at one batch size: pure inference on a batch of real images, then one pipelined
    run over all of them, whose read / preprocess / post-process times are the stage figures
    (measured where they really run: beside inference, as the guide's benchmark tool reports them).
    With shape buckets, pure inference per bucket and the image mix, combined by that mix. With `tta`, end to
    end runs every image's passes (pure inference stays one single-scale batch)."""
    if pre.mode == "buckets":
        infer, per_bucket = _bucketed_inference(runner, items, pre, batch_size, warmup, iters)
    else:
        first = [pre.image_u8(read_rgb(path))[0] for _, path in items[:batch_size]]
        infer, per_bucket = pure_inference(runner, real_batch(first, batch_size, runner.info.layout), warmup, iters), None
    stages = pipelined(runner, items, pre, batch_size, threshold, on_progress, tta)
    stages["infer"] = infer
    if tta is None:  # TTA's end to end runs several passes an image: no ratio to one pass
        stages["e2e_over_infer"] = round(stages["e2e"]["throughput"] / infer["throughput"], 3)
    if per_bucket:
        stages["buckets"] = per_bucket
    return stages


def pipelined(runner: Runner, items: list[tuple[str, Path]], pre: Preprocess, batch_size: int, threshold: float,
              on_progress: Callable[[int], None] | None = None, tta: TtaPlan | None = None) -> dict:
    """One warm pipelined run over `items` (with `tta`'s passes): the read / preprocess / post-process stage
    figures, end to end, the pipeline's threads, and each device's share."""
    batch_size = pipeline.twins_batch(batch_size, runner, tta)
    buffers = pipeline.BatchBuffers(runner, batch_size)
    if pre.mode == "letterbox":  # one input size: every batch buffer made before the clock starts
        width, height = pre.sizes()[0]
        buffers.warm((height, width))
    pipeline.run(items[: 2 * batch_size], runner, pre, lambda *a: None, batch_size=batch_size,
                 threshold=threshold, buffers=buffers, tta=tta)  # warm the pipeline's threads and buffers
    times = pipeline.run(items, runner, pre, lambda *a: None, batch_size=batch_size, threshold=threshold,
                         on_progress=on_progress, buffers=buffers, tta=tta)
    e2e = stats(times.latency)
    e2e["throughput"] = round(times.images / times.wall, 2)  # the pipeline's real rate, not 1/latency
    found = {"read": stage_stats(times.read), "preprocess": stage_stats(times.preprocess),
             "postprocess": stage_stats(times.postprocess), "e2e": e2e,
             "workers": {"preprocess": times.workers, "postprocess": times.post_workers, "infer": runner.info.streams}}
    if times.devices:
        found["devices"] = times.per_device()
    if times.tta:
        found["tta"] = times.tta
    return found


def capacity(probe: Runner, items: list[tuple[str, Path]], pre: Preprocess, batch_size: int, threshold: float,
             on_progress: Callable[[int], None] | None = None) -> dict:
    """The host-feed figure: the whole pipeline (read, preprocess, batch assembly, post-process of real
    outputs, the threads) with devices that answer at once. A card is fed at its rate only below this."""
    found = pipelined(probe, items, pre, batch_size, threshold, on_progress)
    found.pop("devices", None)
    return {"throughput": found["e2e"]["throughput"], **found}


def _bucketed_inference(runner: Runner, items: list[tuple[str, Path]], pre: Preprocess, batch_size: int,
                        warmup: int, iters: int) -> tuple[dict, dict]:
    """Pure inference per bucket on its own real images, and the mix: the combined rate is images over
    the time the mix takes (sum of share / rate)."""
    counts: dict[tuple[int, int], int] = {}
    images: dict[tuple[int, int], list[np.ndarray]] = {}
    for _, path in items:  # each image read once: its bucket, and its input while the bucket's batch fills
        rgb = read_rgb(path)
        bucket = pre.bucket_for(rgb.shape[1], rgb.shape[0])
        counts[bucket] = counts.get(bucket, 0) + 1
        if len(images.setdefault(bucket, [])) < batch_size:
            images[bucket].append(pre.image_u8(rgb)[0])
    per_bucket = {}
    for (w, h), n in sorted(counts.items()):
        batch = real_batch(images[(w, h)], batch_size, runner.info.layout)
        per_bucket[f"{w}x{h}"] = {"images": n, "share": round(n / len(items), 4),
                                  "infer": pure_inference(runner, batch, warmup, iters)}
    seconds_per_image = sum(b["share"] / b["infer"]["throughput"] for b in per_bucket.values())
    combined = {"throughput": round(1 / seconds_per_image, 2), "streams": runner.info.streams,
                "mean_ms": round(1e3 * seconds_per_image * batch_size, 3), "samples": sum(
                    b["infer"]["samples"] for b in per_bucket.values())}
    for key in ("p50_ms", "p90_ms", "p99_ms"):  # the slowest bucket's, as the worst a batch waits
        combined[key] = max(b["infer"][key] for b in per_bucket.values())
    return combined, per_bucket

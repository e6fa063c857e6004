"""`bench`: every stage of a target's pipeline timed on real images, per batch size, into bench.json and
the run's result.json (`--compare` adds the runtimes a user could pick instead)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import backends, bench, deployment, fileio, machine, reading, result_file, runfolder
from toolkit.backends.base import Backend, Runner
from toolkit.chain import ChainOptions, converted, dataset_items, run_chain, sample_images
from toolkit.cluster import RayEngine, check_engine_mode
from toolkit.containers import launch
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import NCHW_F32, Preprocess
from toolkit.errors import InputError
from toolkit.flows.detect import DetectOptions, Detector, detect
from toolkit.flows.video import stage_ms
from toolkit.media.anonymize import Anonymizer
from toolkit.model import weights
from toolkit.pipeline import check_batch_size
from toolkit.progress import counter
from toolkit.target import Target

RESULT = "bench.json"
EXPORTED = "centerface.onnx"  # the run folder's export (every target has one)
BATCHES_PER_STREAM = 6


@dataclass(frozen=True)
class BenchOptions:
    target: Target
    run_dir: Path
    data: Path | None  # WIDER root; None: the sample image, repeated
    pre: Preprocess
    batch_sizes: list[int]
    images: int | None = None  # None: BATCHES_PER_STREAM batches a stream at the largest batch size
    warmup: int = 3
    iters: int = 40
    compare: bool = False
    capacity: bool = False  # also the host-feed figure: the pipeline with devices that answer at once
    cluster: RayEngine | None = None  # also end to end sharded over Ray workers, beside the local figure

    def cli_args(self) -> list[str]:
        """The same bench as `python -m toolkit` arguments (what the target's image runs)."""
        sizes = ",".join(f"{w}x{h}" for w, h in self.pre.sizes()) if self.pre.mode != "native" else None
        return ["bench", "--target", self.target.name, "--batch-sizes", ",".join(map(str, self.batch_sizes)),
                *(["--images", str(self.images)] if self.images else []), "--warmup", str(self.warmup), "--iters", str(self.iters),
                "--preprocess", self.pre.mode, *(["--size", sizes] if sizes else []),
                *(["--compare"] if self.compare else []), *(["--capacity"] if self.capacity else []),
                *(["--tta"] if self.target.tta else []), *launch.device_flags(self.target)]


def check(opts: BenchOptions) -> None:
    if not opts.batch_sizes or any(b < 1 for b in opts.batch_sizes) or len(set(opts.batch_sizes)) != len(opts.batch_sizes):
        raise InputError(f"batch sizes {','.join(map(str, opts.batch_sizes)) or '(none)'}: expected positive integers, "
                         "each once, such as 1,16")
    for bs in opts.batch_sizes:
        check_batch_size(bs, opts.target.preprocess.sizes())
    if (opts.images is not None and opts.images < 1) or opts.iters < 1 or opts.warmup < 0:
        raise InputError("--images and --iters must be 1 or more, --warmup 0 or more")


def benchmark(opts: BenchOptions, where: str, json_path: Path | None, log: Callable[[str], None], progress) -> dict:
    """The figures, in the run folder (bench.json, result.json's `bench`) and `json_path`; in the target's
    image when `where` is container. The run folder changes only if all of it succeeds."""
    check(opts)
    fileio.check_output_file(json_path)
    spec = opts.target
    if where == "emulate":
        raise InputError(f"target {spec.name}: bench measures speed, and an emulation's speed is this CPU's, not the "
                         "device's", "run --mode emulate gives the emulated AP; bench --target cpu-buckets the CPU's speed")
    device_ids = spec.device_ids
    check_engine_mode(opts.cluster, where, spec.tta)
    if where == "container":
        config = launch.built_image(spec, device_ids)
        with runfolder.transaction(opts.run_dir, f"bench --target {spec.name}", reads=opts.data) as staged:
            launch.in_container(config, opts.cli_args(), staged, opts.data, device_ids, log)
            result = reading.read_json(staged / RESULT, {"batch_sizes": dict})
            if json_path:
                fileio.publish({json_path: fileio.json_writer(result)})
        return result
    backend = backends.require(spec)
    with runfolder.transaction(opts.run_dir, f"bench --target {spec.name}", reads=opts.data) as staged:
        result = _measure(opts, backend, staged, log, progress)
        fileio.write_json(staged / RESULT, result)
        result_file.write(staged, {"bench": {k: v for k, v in result.items() if k not in ("machine", "versions")}},
                          defaults={"target": result["target"]})
        if json_path:
            fileio.publish({json_path: fileio.json_writer(result)})
    return result


def _model(opts: BenchOptions, run_dir: Path, log: Callable[[str], None]) -> Path:
    """The model `run` made in the run folder, else exported and converted now."""
    artefact = converted(run_dir, opts.target)
    if artefact is None:
        if opts.target.precision == "int8":  # calibration needs the dataset and takes minutes: that is `run`'s job
            raise InputError(f"{opts.run_dir}: no INT8 model yet", f"run `python -m toolkit run --target {opts.target.name}` first")
        run_chain(ChainOptions(opts.target, run_dir, opts.data, limit=1, stages=("export", "convert")), log)
        artefact = converted(run_dir, opts.target)
    return artefact


def bench_images(opts: BenchOptions, runner: Runner) -> list[tuple[str, Path]]:
    """--images real images, else enough for BATCHES_PER_STREAM batches a stream at the largest batch size
    (fewer batches make the end-to-end figure swing with the first and last batch)."""
    count = opts.images or BATCHES_PER_STREAM * max(opts.batch_sizes) * runner.info.streams
    return dataset_items(opts.data, count) if opts.data else sample_images() * count


def _measure(opts: BenchOptions, backend: Backend, run_dir: Path, log: Callable[[str], None], progress) -> dict:
    spec = opts.target
    artefact = _model(opts, run_dir, log)
    log(f"benchmarking {artefact.name}")
    with backend.runner(artefact, spec) as runner, contextlib.ExitStack() as closing:
        items = bench_images(opts, runner)
        result: dict = {"target": spec.name, "backend": backend.name, "preprocess": opts.pre.as_dict(),
                        "images": len(items), "threshold": spec.threshold, "batch_sizes": {}, "machine": machine.describe(),
                        "versions": {**machine.versions(), "backend": backend.version()},
                        "runtime": runner.reported() or None, "tta": spec.passes.as_dict() if spec.passes else None}
        if backend.simulation is not None:
            result["simulation"] = backend.simulation.describe(spec)
        probe = closing.enter_context(_instant_devices(run_dir, runner, items, opts.pre)) if opts.capacity else None
        for bs in opts.batch_sizes:
            figures = bench.bench_batch(runner, items, opts.pre, bs, spec.threshold, opts.warmup, opts.iters,
                                        counter(progress, f"batch {bs}", len(items)), spec.passes)
            if backend.simulation is not None:
                rate = backend.simulation.rate(spec, bs)
                figures["simulated_rate"] = rate
                figures["e2e_over_simulated"] = round(figures["e2e"]["throughput"] / rate, 3)
            if opts.cluster is not None:
                figures["ray"] = _on_cluster(opts, artefact, items, bs, figures["e2e"]["throughput"], progress)
            if probe is not None:
                figures["capacity"] = bench.capacity(probe, items, opts.pre, bs, spec.threshold,
                                                     counter(progress, f"capacity, batch {bs}", len(items)))
            result["batch_sizes"][str(bs)] = figures
        if opts.compare:
            result["compare"] = _compare(runner, weights.fetch(), items, opts)
    return result


def _on_cluster(opts: BenchOptions, artefact: Path, items: list, batch_size: int, local_rate: float,
                progress) -> dict:
    """End to end over the same images sharded over Ray workers, and its ratio to the local run."""
    advance = counter(progress, f"ray, {opts.cluster.workers} workers, batch {batch_size}", len(items))
    times = opts.cluster.run(items, opts.target.overridden(None, batch_size), artefact, batch_size,
                             lambda *a: None, set(), advance)
    found = times.summary(opts.cluster)
    return {"throughput": found["images_per_s"], "over_local": round(found["images_per_s"] / local_rate, 3), **found}


def _instant_devices(run_dir: Path, runner: Runner, items: list, pre: Preprocess) -> Runner:
    """The host-feed probe: as many devices as `runner` has, in its layout, answering at once with the
    exported model's real outputs for a few of the images (computed here, on the CPU)."""
    from toolkit.backends import sim

    images = [read_rgb(path) for _, path in sim.spread(items)]
    outputs = {(h, w): sim.reference_outputs(run_dir / EXPORTED,
                                             [Preprocess("letterbox", w, h).image_u8(rgb)[0] for rgb in images])
               for w, h in pre.sizes()}
    return sim.instant(outputs, runner.info.layout, runner.info.streams)


def _compare(ours: Runner, official_onnx: Path, items: list, opts: BenchOptions) -> dict:
    """Pure inference at batch 1 on the same real image for our runner and each peer, each labelled
    by its runtime's own name."""
    from toolkit.peers import peers

    image = opts.pre.image_u8(read_rgb(items[0][1]))[0]
    batch = bench.real_batch([image], 1, NCHW_F32)  # what the peers take
    mine = f"toolkit ({ours.name})"
    figures = {mine: bench.pure_inference(ours, bench.real_batch([image], 1, ours.info.layout), opts.warmup, opts.iters)}
    for peer_cls in peers():
        with peer_cls(official_onnx) as peer:
            figures[peer.name] = bench.pure_inference(peer, batch, opts.warmup, opts.iters)
    ours_rate = figures[mine]["throughput"]
    return {name: {**f, "ours_over_this": round(ours_rate / f["throughput"], 3)} for name, f in figures.items()}


def video_benchmark(spec: Target, run_dir: Path, video: str, where: str, anonymizer: Anonymizer, data: Path | None,
                    json_path: Path | None, log: Callable[[str], None], progress) -> dict:
    """A video through the target's deployment as `detect` runs it (faces hidden, encoded, audio copied), its
    stages timed per frame and its end-to-end frames/s; into the run folder's video_bench.json and `json_path`."""
    fileio.check_output_file(json_path)
    if where == "emulate":
        raise InputError(f"target {spec.name}: bench measures speed, and an emulation's speed is this CPU's")
    if where == "container":
        raise InputError(f"target {spec.name}: bench --video runs on the host",
                         "bench --video with --mode host, on a host that has the target's device")
    detector = Detector.of_deployment(deployment.load(spec, run_dir, where, data, log, progress))
    with tempfile.TemporaryDirectory() as scratch:
        found = detect([video], Path(scratch) / "out", detector, DetectOptions(anonymizer=anonymizer, min_score=0.5),
                       log, progress)["videos"][video]
    result = {"target": spec.name, "video": video, "frames": found["frames"], "size": found["size"],
              "anonymize": anonymizer.mode, "frames_per_s": found["frames_per_s"], "wall_s": found["wall_s"],
              "stages_ms": stage_ms(found), "pipeline": found["pipeline"], "machine": machine.describe(),
              "input": detector.preprocess.as_dict()}
    with runfolder.transaction(run_dir, f"bench --video --target {spec.name}") as staged:
        fileio.write_json(staged / "video_bench.json", result)
        if json_path:
            fileio.publish({json_path: fileio.json_writer(result)})
    return result


def serve_benchmark(spec: Target, run_dir: Path, where: str, data: Path | None, images: int, levels: list[int],
                    seconds: float, url: str | None, json_path: Path | None, log: Callable[[str], None],
                    progress) -> dict:
    """The service under load: each concurrency level for `seconds` with `images` real WIDER images (the service started
    here, on a free port of 127.0.0.1, unless `url` names one); into the run folder's serve_bench.json, result.json's
    `bench.serve`, and `json_path`."""
    from toolkit.flows.serve import TOKEN_ENV
    from toolkit.serve import load

    fileio.check_output_file(json_path)
    items = dataset_items(data, images) if data else sample_images()
    bodies = [reading.read_bytes(path, what="image file") for _, path in items]
    service = None
    if url is None:
        deployment.load(spec, run_dir, where, data, log, progress)  # converted before the service starts
        service = load.Service(["--target", spec.name, "--from", str(run_dir), "--mode", where,
                                *launch.device_flags(spec)], log)
    try:
        found = load.run_levels((url or service.url).rstrip("/"), bodies, levels, seconds,
                                os.environ.get(TOKEN_ENV), service.rss_mb if service else lambda: None, log)
    finally:
        drained = service.stop() if service else None
    result = {"target": spec.name, "url": url or "started here on 127.0.0.1", "images": len(bodies), **found,
              "service_exit": drained, "machine": machine.describe()}
    with runfolder.transaction(run_dir, f"bench --serve --target {spec.name}") as staged:
        fileio.write_json(staged / "serve_bench.json", result)
        earlier = result_file.read(staged).get("bench") or {}
        result_file.write(staged, {"bench": {**earlier, "serve": {k: v for k, v in result.items() if k != "machine"}}},
                          defaults={"target": spec.name})
        if json_path:
            fileio.publish({json_path: fileio.json_writer(result)})
    return result

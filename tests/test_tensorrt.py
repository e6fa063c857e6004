"""TensorRT without a GPU: targets and profiles, the calibrator's batching over a real calibration set,
engine metadata checks, the trtexec line and its output parsed. With TensorRT and a GPU, the real chain."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import calibration, targets
from toolkit.backends.tensorrt import engine, trtexec
from toolkit.backends.tensorrt.backend import TensorRTBackend
from toolkit.backends.tensorrt.calibrator import Feeder
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.data.images import read_rgb
from toolkit.errors import InputError

TRTEXEC_BS1 = """[11/25/2026-10:01:02] [I] === Performance summary ===
[11/25/2026-10:01:02] [I] Throughput: 331.821 qps
[11/25/2026-10:01:02] [I] Latency: min = 3.11 ms, max = 3.52 ms, mean = 3.19 ms, median = 3.18 ms, percentile(90%) = 3.24 ms, percentile(95%) = 3.27 ms, percentile(99%) = 3.41 ms
[11/25/2026-10:01:02] [I] Enqueue Time: min = 0.41 ms, max = 0.88 ms, mean = 0.46 ms, median = 0.45 ms, percentile(90%) = 0.5 ms, percentile(95%) = 0.52 ms, percentile(99%) = 0.7 ms
[11/25/2026-10:01:02] [I] H2D Latency: min = 0.21 ms, max = 0.3 ms, mean = 0.22 ms, median = 0.22 ms, percentile(90%) = 0.23 ms, percentile(95%) = 0.24 ms, percentile(99%) = 0.28 ms
[11/25/2026-10:01:02] [I] GPU Compute Time: min = 2.9 ms, max = 3.21 ms, mean = 2.962614 ms, median = 2.95 ms, percentile(90%) = 3.0 ms, percentile(95%) = 3.02 ms, percentile(99%) = 3.15 ms
[11/25/2026-10:01:02] [I] D2H Latency: min = 0.01 ms, max = 0.03 ms, mean = 0.01 ms, median = 0.01 ms, percentile(90%) = 0.01 ms, percentile(95%) = 0.01 ms, percentile(99%) = 0.02 ms
&&&& PASSED TensorRT.trtexec [TensorRT v100300]
"""


def test_targets_and_profiles() -> None:
    fp16, int8 = (TensorRTSettings.of(targets.load(n)) for n in ("t4", "t4-int8"))
    assert (fp16.precision, int8.precision) == ("fp16", "int8")
    assert (fp16.min_batch, fp16.opt_batch, fp16.max_batch) == (1, 16, 16) and fp16.shape(16) == (16, 3, 800, 800)
    assert targets.load("t4").extra["container"]["devices"] == "nvidia"


@pytest.mark.parametrize("section, message", [
    ("[tensorrt]\nmin_batch = 4\nopt_batch = 2\nmax_batch = 16", "min_batch <= opt_batch"),
    ("[tensorrt]\nopt_batch = 8\nmax_batch = 8", "outside the profile 1..8"),
])
def test_bad_profiles_are_refused(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "gpu.toml"
    path.write_text('name = "gpu"\nbackend = "tensorrt"\nprecision = "fp16"\n[input]\npreprocess = "letterbox"\n'
                    f'size = [800, 800]\nbatch_sizes = [1, 16]\n{section}\n')
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        TensorRTSettings.of(targets.load(str(path)))


def test_trtexec_line_is_the_guides() -> None:
    assert trtexec.command(Path("centerface.onnx"), 1, 800, 800) == shlex.split(
        "trtexec --onnx=centerface.onnx --fp16 --shapes=image:1x3x800x800")
    assert trtexec.command(Path("c.onnx"), 16, 800, 800, "int8", Path("calibration.cache"))[-2:] == \
        ["--int8", "--calib=calibration.cache"]


def test_trtexec_summary_is_parsed() -> None:
    found = trtexec.parse(TRTEXEC_BS1, batch=1).as_dict()
    assert found["images_per_s"] == 337.54 and found["qps"] == 331.821  # the guide's fps: 1000 x bs / GPU mean
    assert found["gpu_compute_ms"]["p99"] == 3.15 and found["latency_ms"]["median"] == 3.18
    assert trtexec.parse(TRTEXEC_BS1, batch=16).images_per_s == 5400.64
    with pytest.raises(InputError, match="not a trtexec performance summary"):
        trtexec.parse("&&&& FAILED TensorRT.trtexec", batch=1)


def test_engine_metadata_refuses_another_gpu_or_version(tmp_path: Path) -> None:
    built = {"tensorrt": "10.3.0", "gpu": "Tesla T4", "compute_capability": "7.5", "precision": "fp16"}
    plan = tmp_path / "centerface.fp16.engine"
    plan.write_bytes(b"serialized")
    with pytest.raises(InputError, match="no centerface.fp16.json"):
        engine.check(plan, built)
    engine.meta_path(plan).write_text(json.dumps(built))
    assert engine.check(plan, dict(built))["precision"] == "fp16"
    with pytest.raises(InputError, match=r"gpu Tesla T4 \(here NVIDIA H100\).*compute_capability 7.5 \(here 9.0\)") as err:
        engine.check(plan, {**built, "gpu": "NVIDIA H100", "compute_capability": "9.0"})
    assert "run --stages convert" in err.value.hint
    with pytest.raises(InputError, match=r"tensorrt 10.3.0 \(here 10.8.0\)"):
        engine.check(plan, {**built, "tensorrt": "10.8.0"})


def test_calibrator_batches_the_real_calibration_set(data_root: Path, tmp_path: Path) -> None:
    recipe = calibration.load_recipe("tensorrt", count=6, batch_size=4)
    calib, _ = calibration.build(recipe, data_root, tmp_path)
    images = np.concatenate(list(calib.batches()))
    assert images.shape == (6, 3, 800, 800)
    three = Feeder(calib, 3, (3, 800, 800))  # regrouped across the stored batches of 4 and 2
    got = list(three)
    assert three.batches == 2 and three.left_out == 0 and len(got) == 2
    np.testing.assert_array_equal(np.concatenate(got), images)
    four = Feeder(calib, 4, (3, 800, 800))
    assert four.batches == 1 and four.left_out == 2 and len(list(four)) == 1
    with pytest.raises(InputError, match="fewer than one batch of 8"):
        Feeder(calib, 8, (3, 800, 800))
    with pytest.raises(InputError, match="the engine takes"):
        Feeder(calib, 2, (3, 640, 640))
    names = [n for n in calib.manifest["images"]]
    first = recipe.pre()(read_rgb(data_root / "WIDER_val" / "images" / names[0]))[0]
    np.testing.assert_array_equal(got[0][0], first)  # real images at the deployed shape


def test_without_tensorrt_the_target_is_unavailable(tmp_path: Path) -> None:
    reason = TensorRTBackend().unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are here")
    result = invoke("run", "--target", "t4", "--mode", "host", "--out", tmp_path / "t4")
    assert result.exit_code == 3 and "unavailable: target t4:" in result.output
    plan = invoke("run", "--target", "t4", "--dry-run", "--out", tmp_path / "t4")
    assert plan.exit_code == 0 and "trtexec --onnx=/runs/t4/centerface.onnx --fp16 --shapes=image:16x3x800x800" in plan.output
    assert "--gpus all" in plan.output


@pytest.mark.hardware
def test_engines_on_a_gpu(tmp_path: Path, data_root: Path) -> None:
    reason = TensorRTBackend().unavailable()
    if reason:
        pytest.skip(f"unavailable: {reason}")
    result = invoke("run", "--target", "t4", "--mode", "host", "--data", data_root, "--limit", 32, "--out", tmp_path / "t4")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "t4" / "result.json").read_text())
    assert saved["ap"]["easy"] > 0.85
    meta = json.loads((tmp_path / "t4" / "centerface.fp16.json").read_text())
    assert meta["precision"] == "fp16" and meta["profiles"][0]["max"] == [16, 3, 800, 800]

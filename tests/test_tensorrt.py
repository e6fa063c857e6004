"""TensorRT without a GPU: targets and profiles, the majors table, the typed ONNX models (FP16, INT8 Q/DQ
placement) and their emulation, engine metadata checks, the trtexec line and its output parsed. With
TensorRT and a GPU, the real chain. tests/test_tensorrt_surface.py checks the names against the bindings."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import calibration, targets
from toolkit.backends.tensorrt import engine, majors, trtexec, typed
from toolkit.backends.tensorrt.backend import TensorRTBackend
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.errors import InputError, Unavailable
from toolkit.paths import REPO_ROOT

REMOVED_TRTEXEC_FLAGS = ("--fp16", "--int8", "--calib", "--best")  # gone in trtexec 11.x

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


def test_trtexec_lines_per_major() -> None:
    """10.x opts in to strong typing; 11.x always is (its --stronglyTyped is a deprecated no-op)."""
    ten, eleven = (trtexec.command(Path("c.typed.onnx"), 16, 800, 800, majors.MAJORS[m]) for m in (10, 11))
    assert ten == shlex.split("trtexec --onnx=c.typed.onnx --stronglyTyped --shapes=image:16x3x800x800")
    assert eleven == shlex.split("trtexec --onnx=c.typed.onnx --shapes=image:16x3x800x800")


def test_the_majors_table() -> None:
    assert majors.major_of("10.16.1.11").number == 10 and majors.major_of("11.4.0.106").cuda == 13
    for old in ("8.6.1", "9.3.0", "12.0.0"):
        with pytest.raises(Unavailable, match=f"TensorRT {old}: the toolkit supports TensorRT 10 and 11"):
            majors.major_of(old)
    from toolkit.backends.tensorrt.backend import _supported

    assert _supported("8.6.1") == (False, "TensorRT 8.6.1: the toolkit supports TensorRT 10 and 11 (strongly typed builds)")
    assert _supported("11.4.0.106") == (True, "TensorRT 11: supported (strongly typed builds)")


def test_the_image_pins_cuda_python_by_the_base_images_major() -> None:
    text = (REPO_ROOT / "docker" / "tensorrt.Dockerfile").read_text()
    pins = {int(m): (int(lo), int(hi)) for m, lo, hi in re.findall(r"(\d+)\) pin=\"cuda-python>=(\d+),<(\d+)\"", text)}
    assert pins == {n: (m.cuda, m.cuda + 1) for n, m in majors.MAJORS.items()}
    default = majors.MAJORS[majors.IMAGE_DEFAULT]
    assert f"Default: TensorRT {default.number} (CUDA {default.cuda})" in text


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


def test_without_tensorrt_the_target_is_unavailable(tmp_path: Path) -> None:
    reason = TensorRTBackend().unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are here")
    result = invoke("run", "--target", "t4", "--mode", "host", "--out", tmp_path / "t4")
    assert result.exit_code == 3 and "unavailable: target t4:" in result.output
    plan = invoke("run", "--target", "t4", "--dry-run", "--out", tmp_path / "t4")
    assert plan.exit_code == 0 and "trtexec --onnx=/runs/t4/centerface.fp16.typed.onnx --shapes=image:16x3x800x800" \
        in plan.output
    assert "--gpus device=0" in plan.output  # the one GPU its file names


@pytest.mark.parametrize("target", ["t4", "t4-int8", "t4-buckets"])
def test_every_dry_run_command_is_valid_on_tensorrt_11(target: str, tmp_path: Path) -> None:
    result = invoke("run", "--target", target, "--dry-run", "--out", tmp_path / target)
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / target / "plan.json").read_text())
    lines = [step["command"] for step in plan["steps"] if step["command"]]
    assert lines and all(line[0] == "trtexec" for line in lines)
    assert not [flag for line in lines for arg in line for flag in REMOVED_TRTEXEC_FLAGS if arg.startswith(flag)]
    assert all(line[1] == f"--onnx=/runs/{target}/centerface.{targets.load(target).precision}.typed.onnx" for line in lines)
    titles = " ".join(step["title"] for step in plan["steps"])
    assert "strongly typed engine" in titles and "calibration.cache" not in json.dumps(plan)


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


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_the_typed_fp16_model_is_what_the_emulation_runs(cpu_run: Path, tmp_path: Path) -> None:
    """The deployed FP16 ONNX: FP16 weights, FP32 I/O, checker-clean; its upcast holds the same weights bit
    for bit and rounds every tensor to FP16."""
    import onnx
    from onnx import TensorProto

    info = typed.fp16_model(cpu_run / "centerface.onnx", tmp_path / "typed.onnx")
    model = onnx.load(str(tmp_path / "typed.onnx"))
    assert {v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)} == {TensorProto.FLOAT}
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    assert info["fp32_nodes"] == [] and info["weights_clamped"] > 0  # its rule: |w| < 1e-7 -> +-1e-7
    deployed = _initializers(tmp_path / "typed.onnx")
    emulated = _initializers(typed.upcast(tmp_path / "typed.onnx", tmp_path / "emulated.onnx"))
    assert deployed.keys() == emulated.keys()
    for name, weight in deployed.items():
        assert emulated[name].dtype == np.float32
        np.testing.assert_array_equal(emulated[name].astype(np.float16).view(np.uint16), weight.view(np.uint16))
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    image = np.random.default_rng(1).uniform(0, 255, (1, 3, 256, 256)).astype(np.float32)
    with OnnxRuntimeRunner(tmp_path / "emulated.onnx", optimisation="basic") as fp16, \
            OnnxRuntimeRunner(cpu_run / "centerface.onnx") as fp32:
        got, reference = fp16.infer(image), fp32.infer(image)
    for name, array in got.items():
        np.testing.assert_array_equal(array, array.astype(np.float16).astype(np.float32))  # FP16 values only
        assert 0 < np.abs(array - reference[name]).max() < 0.1


def test_the_int8_model_follows_tensorrts_qdq_placement(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """The deployed INT8 ONNX: Q/DQ only where TensorRT fuses it, the held block unquantised, FP16 scales
    at opset 21; `qdq_placement` is what checked it, and it finds ONNX Runtime's default placement wrong, and
    NNCF's own (per-channel depthwise inputs)."""
    import onnx
    from onnx import TensorProto

    from toolkit.backends import emulation
    from toolkit.backends.tensorrt.backend import INT8_SCHEME, TensorRTBackend, typed_path

    target = targets.load("t4-int8")
    target = target.with_extra("calibration", {**target.extra["calibration"], "keep_fp16": ["/backbone/features.0/*"]})
    calib, _ = calibration.build(calibration.load_recipe("tensorrt", count=4, batch_size=2), data_root, tmp_path / "sets")
    models, record = TensorRTBackend().emulation.make(cpu_run / "centerface.onnx", target, calib, tmp_path / "run", lambda _m: None)
    deployed = onnx.load(str(typed_path(tmp_path / "run", target)))
    assert typed.qdq_placement(deployed) == [] and next(o.version for o in deployed.opset_import if o.domain == "") == 21
    nodes = deployed.graph.node
    made_by = {out: n for n in nodes for out in n.output}
    layers = [n for n in nodes if n.op_type in typed.WEIGHTED]
    held = [n for n in layers if any(n.name.startswith(p.rstrip("*")) for p in target.extra["calibration"]["keep_fp16"])]
    assert held and all(made_by[i].op_type != "DequantizeLinear" for n in held for i in n.input[:2] if i in made_by)
    quantised = [n for n in layers if n not in held]
    assert all(made_by[n.input[0]].op_type == made_by[n.input[1]].op_type == "DequantizeLinear" for n in quantised)
    inits = {i.name: i for i in deployed.graph.initializer}
    scales = {inits[n.input[1]].data_type for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert scales == {TensorProto.FLOAT16}
    assert record["emulates"]["file"] == "centerface.int8.typed.onnx" and "Conv, ConvTranspose inputs" in record["numerics"]
    default = onnx.load(str(emulation.calibrated_qdq(cpu_run / "centerface.onnx", tmp_path / "ort.onnx", calib,
                                                      replace(INT8_SCHEME, method="entropy", quantised_ops=(), int32_bias=True),
                                                      tmp_path / "cache")))
    found = " ".join(typed.qdq_placement(default))
    assert "feeds ['Relu'], no weighted layer" in found and "not symmetric INT8" in found  # output pairs, INT32 bias
    from toolkit.backends import nncf_quant  # NNCF's own placement (OpenVINO's): depthwise inputs per channel

    openvino_kind = onnx.load(str(nncf_quant.quantize(cpu_run / "centerface.onnx", calib, [], tmp_path / "ov.onnx")))
    assert "an activation quantised per channel" in " ".join(typed.qdq_placement(openvino_kind))


def test_nncf_s_unsigned_pairs_become_int8_over_the_same_range(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """TensorRT takes INT8 pairs only: a non-negative activation NNCF quantises unsigned keeps its range in INT8
    (twice the step), and every activation pair keeps ONNX Runtime's names, which the sensitivity matches."""
    import onnx
    from onnx import numpy_helper

    from toolkit.backends import nncf_quant

    calib, _ = calibration.build(calibration.load_recipe("tensorrt", count=2, batch_size=2), data_root, tmp_path / "sets")
    pairs = {}
    for signed in (False, True):
        model = onnx.load(str(nncf_quant.quantize(cpu_run / "centerface.onnx", calib, [], tmp_path / f"{signed}.onnx",
                                                  ("Conv", "ConvTranspose"), signed)))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        pairs[signed] = {n.output[0]: (inits[n.input[1]], inits[n.input[2]].dtype.type) for n in model.graph.node
                         if n.op_type == "DequantizeLinear" and n.output[0].endswith("_DequantizeLinear_Output")}
    assert pairs[False].keys() == pairs[True].keys() and len(pairs[True]) > 50
    assert {dtype for _, dtype in pairs[True].values()} == {np.int8}
    unsigned = [name for name, (_, dtype) in pairs[False].items() if dtype == np.uint8]
    assert unsigned
    for name in unsigned:
        np.testing.assert_allclose(pairs[True][name][0] * 127, pairs[False][name][0] * 255, rtol=1e-6)


def test_tensorrt_before_10_is_refused_in_one_line(tmp_path: Path) -> None:
    """An installed TensorRT 8.6 (its package metadata and version, as pip leaves them): `run` and `doctor`
    say in one line that the toolkit supports 10 and 11; nothing of the old API is touched."""
    import os

    from cli import run_cli

    site = tmp_path / "site"
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text('__version__ = "8.6.1"\n')
    (site / "tensorrt-8.6.1.dist-info").mkdir()
    (site / "tensorrt-8.6.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorrt\nVersion: 8.6.1\n")
    env = {"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}"}
    code, _, err = run_cli("run", "--target", "t4", "--mode", "host", "--out", tmp_path / "t4", env=env)
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert err.strip().startswith("unavailable: target t4: TensorRT 8.6.1: the toolkit supports TensorRT 10 and 11 (strongly typed builds)")
    code, out, _ = run_cli("doctor", env={**env, "COLUMNS": "250"})
    assert "TensorRT 8.6.1: the toolkit supports TensorRT 10 and 11" in out

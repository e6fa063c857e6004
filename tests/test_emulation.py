"""--mode emulate (the accelerator targets' deployed numerics on this CPU) and shape buckets, on real
weights and real WIDER images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli import run_cli
from toolkit import targets
from toolkit.backends import emulation
from toolkit.backends.onnxruntime import OnnxRuntimeRunner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.wider import list_val_images

BUCKETS = Preprocess.parse("buckets", "1024x576,1024x704,1024x768,1024x1024,1024x1376,1024x1568")


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """A plain float64 convolution (one image), the reference the emulated layer is checked against."""
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride][:, :out_h, :out_w]
    return np.einsum("chwij,ocij->ohw", patches, w.astype(np.float64)) + b.astype(np.float64)[:, None, None]


def test_fp16_emulation_really_rounds(cpu_run: Path, wider_images: list[Path], tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    src = cpu_run / "centerface.onnx"
    model = onnx.load(str(src))
    first = model.graph.node[0]
    assert first.op_type == "Conv"
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in first.attribute}
    emulated = emulation.fp16_rounded(src, tmp_path / "fp16.onnx", extra_outputs=(first.output[0],))
    image = Preprocess.parse("letterbox", "256x256")(read_rgb(wider_images[0]))[0][None]
    with OnnxRuntimeRunner(src) as fp32:
        reference = fp32.infer(image)
    import onnxruntime as ort

    from toolkit.backends.onnxruntime import session_options

    session = ort.InferenceSession(str(emulated), session_options(1, "basic"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"image": image})))
    layer = got[first.output[0]][0]
    as_fp16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    assert np.array_equal(layer, as_fp16(layer))  # every value is an FP16 value: the Cast pair was not folded away
    w, b = (as_fp16(weights[n]) for n in first.input[1:])
    expected = as_fp16(conv2d(image[0], w, b, attrs["strides"][0], attrs["pads"][0]).astype(np.float32))
    ulp = np.spacing(np.abs(expected).astype(np.float16)).astype(np.float32)
    off = np.abs(layer - expected)
    # the numpy FP16 rounding of the same layer: within one FP16 step, but where the FP32 sum of ~27
    # products of up to 255 cancels to almost nothing (its own rounding, ~1e-5, is then many FP16 steps)
    assert np.all(off <= ulp + 1e-4) and np.mean(off <= ulp) > 0.9999
    assert np.mean(layer == expected) > 0.99
    for name in ("heatmap", "scale", "offset", "landmarks"):
        assert np.array_equal(got[name], as_fp16(got[name]))
    diff = np.abs(got["heatmap"] - reference["heatmap"]).max()
    assert 0 < diff < 0.02  # differs from FP32, by FP16's rounding only


def test_int8_emulation_is_reproducible(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    from toolkit import calibration
    from toolkit.backends.tensorrt.backend import INT8_SCHEME

    recipe = calibration.load_recipe("tensorrt", count=4, batch_size=2)
    calib, _ = calibration.build(recipe, data_root, tmp_path / "sets")
    image = Preprocess.parse("letterbox", "800x800")(read_rgb(list_val_images(data_root)[100][1]))[0][None]
    outputs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        model = emulation.int8_qdq(cpu_run / "centerface.onnx", tmp_path / run / "int8.onnx", calib, INT8_SCHEME,
                                   tmp_path / run / "cache")
        with OnnxRuntimeRunner(model, optimisation="basic") as runner:
            outputs.append(runner.infer(image))
    for name, array in outputs[0].items():
        np.testing.assert_array_equal(array, outputs[1][name])
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "a" / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Cast"} <= ops
    from dataclasses import replace

    held = replace(INT8_SCHEME, keep_fp16=("/backbone/features.0/*",))  # as a keep_fp16 of t4-int8
    model = onnx.load(str(emulation.int8_qdq(cpu_run / "centerface.onnx", tmp_path / "held.onnx", calib, held,
                                             tmp_path / "a" / "cache")))
    made_by = {out: n.op_type for n in model.graph.node for out in n.output}
    first = next(n for n in model.graph.node if n.name == "/backbone/features.0/features.0.0/Conv")
    assert made_by.get(first.input[0]) != "DequantizeLinear" and made_by.get(first.input[1]) != "DequantizeLinear"
    assert "held in FP16: /backbone/features.0/*" in held.describe()


@pytest.fixture(scope="module")
def emulated_runs(data_root: Path, tmp_path_factory) -> Path:
    """t4, 310 and 310p-fp16 emulated on the same 8 images (FP16 at 800x800; the 310P's input through AIPP)."""
    runs = tmp_path_factory.mktemp("emulated")
    for target in ("t4", "310", "310p-fp16"):
        code, _, err = run_cli("run", "--target", target, "--mode", "emulate", "--data", data_root, "--limit", 8,
                               "--out", runs / target)
        assert code == 0, err
    return runs


def test_an_emulated_run_says_so_everywhere(emulated_runs: Path, cpu_run: Path) -> None:
    import shutil

    result = json.loads((emulated_runs / "t4" / "result.json").read_text())
    assert result["emulated"] is True and result["throughput"] is None and result["tool_throughput"] is None
    assert result["emulation"]["numerics"].startswith("FP16") and result["emulation"]["differs"]
    assert result["reference"]["what"] == "CPU FP32 (onnxruntime), the same images at the same input"
    assert all(abs(result["ap"][s] - result["reference"]["ap"][s]) < 0.01 for s in ("easy", "medium", "hard"))
    shutil.copytree(cpu_run, emulated_runs / "cpu")
    code, out, err = run_cli("report", "--runs", emulated_runs)
    assert code == 0, err
    rows = json.loads((emulated_runs / "report.json").read_text())["rows"]
    (t4,) = [r for r in rows if r["target"] == "t4"]
    assert t4["status"] == "emulated" and t4["source"] == "emulated" and "emulated" in t4["runs_in"]
    assert t4["easy"] is not None and t4["delta_easy"] is not None
    assert t4["e2e_images_per_s"] is None and t4["infer_images_per_s"] is None and t4["tool_images_per_s"] is None
    assert rows[rows.index(t4) + 1]["target"] == "t4 (guide)"  # the published row beside it
    assert "emulated" in (emulated_runs / "report.md").read_text()


def test_an_emulated_tensorrt_run_evaluates_the_deployed_file(emulated_runs: Path) -> None:
    """result.json names the typed ONNX the engine build takes; the emulation ran that very file (same
    sha256), its weights upcast bit for bit into the model ONNX Runtime evaluated."""
    from onnx import load, numpy_helper

    from toolkit.model.weights import sha256

    run = emulated_runs / "t4"
    result = json.loads((run / "result.json").read_text())
    deployed = run / result["deployed_model"]["file"]
    assert deployed.name == "centerface.fp16.typed.onnx"
    assert result["deployed_model"]["sha256"] == sha256(deployed) == result["emulation"]["emulates"]["sha256"]
    weights = {i.name: numpy_helper.to_array(i) for i in load(str(deployed)).graph.initializer}
    evaluated = {i.name: numpy_helper.to_array(i) for i in load(str(run / "centerface.emulated.800x800.onnx")).graph.initializer}
    assert weights and all(np.array_equal(evaluated[n].astype(np.float16).view(np.uint16), w.view(np.uint16))
                           for n, w in weights.items())


def test_the_aipp_path_is_lossless(emulated_runs: Path) -> None:
    """uint8 HWC through the generated AIPP config gives the float input exactly: the same FP16 predictions
    as the 310's float NCHW input."""
    floats, aipp = (emulated_runs / t / "predictions" for t in ("310", "310p-fp16"))
    files = sorted(p.relative_to(floats) for p in floats.rglob("*.txt"))
    assert len(files) == 8
    assert all((floats / f).read_text() == (aipp / f).read_text() for f in files)
    config = (emulated_runs / "310p-fp16" / "aipp_centerface.aippconfig").read_text()
    assert "src_image_size_w : 800" in config


def test_emulation_is_refused_where_there_is_nothing_to_emulate(tmp_path: Path) -> None:
    code, _, err = run_cli("run", "--target", "cpu", "--mode", "emulate", "--out", tmp_path / "cpu")
    assert code == 3 and err.strip().startswith("unavailable: target cpu: backend onnxruntime runs on this machine")
    code, _, err = run_cli("bench", "--target", "t4", "--mode", "emulate", "--out", tmp_path / "t4")
    assert code == 2 and "an emulation's speed is this CPU's" in err


def test_every_image_lands_in_exactly_one_bucket_never_downscaled_when_one_holds_it(data_root: Path) -> None:
    import cv2

    sizes = [cv2.imread(str(p)).shape[1::-1] for _, p in list_val_images(data_root)[::7]]
    sizes += [(1024, 400), (1024, 576), (1024, 577), (1024, 5541), (800, 600), (1100, 500), (64, 64)]
    for width, height in sizes:
        bucket = BUCKETS.bucket_for(width, height)
        holding = [b for b in BUCKETS.buckets if b[0] >= width and b[1] >= height]
        t = BUCKETS.transform(width, height)
        assert (t.in_width, t.in_height) == bucket
        if holding:
            assert bucket == holding[0] and t.sx == 1.0  # the smallest that holds it, at scale 1
        else:
            assert bucket == BUCKETS.buckets[-1] and t.sx < 1.0  # the largest, letterboxed
        assert min(t.tx, t.ty) > -1e-6 and t.sx * width <= bucket[0] + 1e-6 and t.sy * height <= bucket[1] + 1e-6


def test_batches_form_per_bucket(wider_images: list[Path]) -> None:
    from toolkit import pipeline
    from toolkit.backends.base import Runner

    seen: list[tuple[int, ...]] = []

    class Shapes(Runner):
        name = "shapes"

        def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            seen.append(batch.shape)
            n, _, h, w = batch.shape
            return {k: np.zeros((n, c, h // 4, w // 4), np.float32)
                    for k, c in (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))}

    items = [(str(i), p) for i, p in enumerate(wider_images * 3)]
    done: list[str] = []
    pipeline.run(items, Shapes(), BUCKETS, lambda key, *_: done.append(key), batch_size=4)
    assert sorted(done) == sorted(k for k, _ in items)  # each image once
    per_size: dict[tuple[int, ...], list[int]] = {}
    for shape in seen:
        per_size.setdefault(shape[2:], []).append(shape[0])
    assert all(sum(1 for n in counts if n < 4) <= 1 for counts in per_size.values())  # one partial batch per bucket


def test_dry_run_shows_gears_and_profiles(tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--target", "310p-buckets", "--dry-run", "--out", tmp_path / "a")
    assert code == 0, err
    atc = [s["command"] for s in json.loads((tmp_path / "a" / "plan.json").read_text())["steps"]
           if s["command"] and s["command"][0] == "atc"]
    assert len(atc) == 2 and "--input_shape=image:16,3,-1,-1" in atc[1]
    assert "--dynamic_image_size=576,1024;704,1024;768,1024;1024,1024;1376,1024;1568,1024" in atc[1]
    assert "'--dynamic_image_size=576,1024;704,1024" in out  # the printed line, quoted for the shell
    config = (tmp_path / "a" / "aipp_centerface.aippconfig").read_text()
    assert "src_image_size_w : 0" in config and "src_image_size_h : 0" in config and "crop : false" in config
    code, out, err = run_cli("run", "--target", "t4-buckets", "--dry-run", "--out", tmp_path / "b")
    assert code == 0, err
    assert "6 profiles batch 1/16/16 at 1024x576, 1024x704, 1024x768, 1024x1024, 1024x1376, 1024x1568" in out
    assert "--shapes=image:16x3x1568x1024" in out and "--shapes=image:1x3x576x1024" in out


def test_the_cpu_runs_buckets_with_one_static_model_each(data_root: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("run", "--target", "cpu-buckets", "--data", data_root, "--limit", 6, "--out", tmp_path / "b")
    assert code == 0, err
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["preprocess"]["buckets"][0] == [1024, 576] and result["images"] == 6
    assert len(list((tmp_path / "b").glob("centerface.cpu-buckets.1024x*.onnx"))) == 6
    target = targets.load("cpu-buckets")
    assert target.preprocess == BUCKETS and not target.ap_reference

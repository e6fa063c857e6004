"""calibrate --search on every kind of INT8 target: each backend holds a float set its own way (TensorRT's typed
FP16, AMCT's skipped layers, the toolkit's keep_float), a device that is not here is searched through its
emulation, each convolution's measured time, and the bootstrap interval of an AP difference."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import onnx

from cli import invoke
from toolkit import layer_time, sensitivity
from toolkit.backends.ascend import commands, plan
from toolkit.backends.ascend.backend import AscendBackend
from toolkit.backends.emulated import EmulatedBackend
from toolkit.calibration import build, load_recipe
from toolkit.data.wider import load_ground_truth
from toolkit.evaluate.bootstrap import delta_intervals
from toolkit.evaluate.deltas import ap_deltas
from toolkit.evaluate.wider_ap import evaluate
from toolkit import targets

REPO = Path(__file__).parents[1]
FIRST_CONV = "/backbone/features.0/features.0.0/Conv"


def _tiny(tmp_path: Path, name: str) -> Path:
    """Target `name` with a 2-image 320x320 calibration recipe, as a file of its own."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('images = "wider_val_calibration.txt"\ncount = 2\npreprocess = "letterbox"\nsize = [320, 320]\n'
                      'batch_size = 1\n')
    text = (REPO / "targets" / f"{name}.toml").read_text()
    text = re.sub(r'recipe = "\w+"', f'recipe = "{recipe}"', text).replace(f'name = "{name}"', f'name = "{name}-tiny"')
    text = re.sub(r'^extends = "([\w-]+)"', lambda m: f'extends = "{REPO / "targets" / m[1]}.toml"', text, flags=re.M)
    path = tmp_path / f"{name}-tiny.toml"
    path.write_text(text)
    return path


def _feeds_from_dequantize(model_path: Path, node_name: str) -> bool:
    model = onnx.load(str(model_path))
    made_by = {out: n.op_type for n in model.graph.node for out in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return made_by.get(node.input[0]) == "DequantizeLinear"


def test_a_device_not_here_is_searched_through_its_emulation_and_keeps_its_own_key(data_root: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("calibrate", "--target", _tiny(tmp_path, "t4-int8"), "--data", data_root, "--limit", 8, "--search",
                    "--out", out)
    assert result.exit_code == 0, result.output
    found = json.loads((out / "search.json").read_text())
    assert found["emulated"] and found["cost"] == "FLOPs at the calibration input" and "(emulated)" in result.output
    chosen = found["chosen"]
    assert tomllib.loads((out / "search.toml").read_text())["calibration"] == {"keep_fp16": chosen["float"]}
    for split in (chosen, found["confirmation"]):
        for setting, (low, high) in ((s, i) for s, i in split["interval"].items() if i):
            assert low <= split[f"delta_{setting}"] <= high
    typed = out / "calibration" / "search" / "centerface.int8.typed.onnx"  # the file TensorRT would build
    held = {c["node"] for c in found["ranking"]} & set(chosen["float"])
    quantised = {c["node"] for c in found["ranking"]} - held
    assert all(not _feeds_from_dequantize(typed, n) for n in held)
    assert all(_feeds_from_dequantize(typed, n) for n in quantised)
    assert (out / found["model"]).is_file() and "selection (4 images):" in result.output


def test_amct_leaves_layers_unquantised_through_its_documented_configuration(tmp_path: Path) -> None:
    documented = json.loads((REPO / "tests" / "data" / "ascend" / "amct_config_fields.json").read_text())
    text = commands.amct_config(2, ("/a/Conv", "/b/Conv"))
    lines = [line.split(" : ", 1) for line in text.splitlines()]
    assert all(field in documented["fields"] for field, _ in lines)
    assert lines == [["batch_num", "2"], ["skip_layers", '"/a/Conv"'], ["skip_layers", '"/b/Conv"']]
    with_config = commands.amct_calibration(Path("x.onnx"), Path("r/x"), 16, 800, 800, Path("bins"), 2, Path("c.cfg"))
    assert with_config[-2:] == ["--calibration_config", "c.cfg"] and "--batch_num" not in with_config

    spec = targets.load(_tiny(tmp_path, "310p"))
    held = spec.with_extra("calibration", {**spec.extra["calibration"], **AscendBackend().float_setting([FIRST_CONV])})
    steps = AscendBackend().dry_run(held, tmp_path / "run")
    amct = next(s for s in steps if s.command and s.command[0] == "amct_onnx")
    assert amct.command[-1] == str(plan.amct_config(tmp_path / "run")) and "1 layers left unquantised" in amct.title
    assert plan.amct_config(tmp_path / "run").read_text() == commands.amct_config(2, (FIRST_CONV,))


def test_the_amct_twin_leaves_the_skipped_layers_unquantised(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    spec = targets.load(_tiny(tmp_path, "310p"))
    calib, _ = build(load_recipe(spec.extra["calibration"]["recipe"]), data_root, tmp_path / "sets")
    emulated = EmulatedBackend(AscendBackend())
    _, held = emulated.quantise_holding(cpu_run / "centerface.onnx", spec, calib, tmp_path / "held", [FIRST_CONV],
                                       lambda _line: None)
    assert held.extra["calibration"]["skip_layers"] == [FIRST_CONV]
    qdq = tmp_path / "held" / "centerface.emulated.qdq.onnx"  # the twin's Q/DQ model before its FP16 rounding
    second = "/backbone/features.1/conv/conv.0/Conv"
    assert not _feeds_from_dequantize(qdq, FIRST_CONV) and _feeds_from_dequantize(qdq, second)
    # AMCT's fake_quant placement: Q/DQ on the inputs of the layer types it quantises, none on an output
    documented = json.loads((REPO / "tests" / "data" / "ascend" / "amct_ptq_layers.json").read_text())
    model = onnx.load(str(qdq))
    readers = {r.op_type for n in model.graph.node if n.op_type == "DequantizeLinear" for r in model.graph.node
               if n.output[0] in r.input}
    assert readers <= set(documented["quantised_layers"]) and {"Conv", "ConvTranspose"} <= readers


def test_each_convolution_s_measured_time_is_traced_back_through_onnx_runtime_s_fusions(cpu_run: Path) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 320, 320)).astype(np.float32)
    shares = layer_time.shares(cpu_run / "centerface.onnx", image)
    convs = sensitivity.conv_flops(cpu_run / "centerface.onnx", 320, 320)
    assert set(shares) == set(convs) and all(0 < s < 1 for s in shares.values())
    assert 0.5 < sum(shares.values()) <= 1.0  # the convolutions are most of the time, never more than all of it


def test_the_bootstrap_interval_of_an_ap_difference(data_root: Path) -> None:
    gt = load_ground_truth(data_root)
    keys = list(gt.images)[:60]
    perfect = {k: np.hstack([gt.images[k].boxes, np.ones((len(gt.images[k].boxes), 1))]) for k in keys}
    halved = {k: rows[: len(rows) // 2] for k, rows in perfect.items()}  # half of each image's faces missed
    assert delta_intervals(perfect, perfect, gt) == {s: [0.0, 0.0] for s in ("easy", "medium", "hard")}
    deltas = ap_deltas(evaluate(halved, gt).aps(), evaluate(perfect, gt).aps())
    intervals = delta_intervals(halved, perfect, gt)
    for setting, (low, high) in intervals.items():
        assert low < deltas[f"delta_{setting}"] < high < 0
    assert intervals == delta_intervals(halved, perfect, gt)  # a fixed seed: the same interval every time


def test_a_held_convolution_of_the_default_placement_reads_the_float_relu_output(cpu_run: Path, data_root: Path,
                                                                                tmp_path: Path) -> None:
    """cpu-int8 (ONNX Runtime's default placement folds each Relu into the Q after a convolution): a held
    convolution reads its input in float, through the Relu again, so it computes what the FP32 model's does on the
    same input; its quantised neighbour still reads the Q/DQ pair."""
    import onnxruntime as ort

    from toolkit.backends.onnxruntime import OnnxRuntimeBackend
    from toolkit.backends.equalise import float_model_of

    spec = targets.load(_tiny(tmp_path, "cpu-int8"))
    calib, _ = build(load_recipe(spec.extra["calibration"]["recipe"]), data_root, tmp_path / "sets")
    second = "/backbone/features.1/conv/conv.0/Conv"  # reads the stem's Relu, folded into the stem's Q
    model_path, _ = OnnxRuntimeBackend().quantise_holding(cpu_run / "centerface.onnx", spec, calib, tmp_path / "held",
                                                          [second], lambda _line: None)
    model = onnx.load(str(model_path))
    made_by = {out: n for n in model.graph.node for out in n.output}
    held = next(n for n in model.graph.node if n.name == second)
    relu = made_by[held.input[0]]
    assert relu.op_type == "Relu" and made_by[relu.input[0]].op_type == "Conv"
    assert made_by.get(held.input[1]) is None  # float weights
    assert _feeds_from_dequantize(model_path, "/backbone/features.1/conv/conv.2/Conv")
    for name in (relu.input[0], held.output[0]):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    batch = next(calib.batches())
    before, after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [relu.input[0], held.output[0]], {"image": batch})
    assert before.min() < 0  # the stem's output before its Relu
    float_model = onnx.load(str(float_model_of(model_path, cpu_run / "centerface.onnx", tmp_path)))
    only = onnx.helper.make_graph([n for n in float_model.graph.node if n.name == second], "held",
                                  [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                                  [onnx.helper.make_tensor_value_info(held.output[0], onnx.TensorProto.FLOAT, None)],
                                  [i for i in float_model.graph.initializer if i.name in held.input])
    only.node[0].input[0] = "x"
    alone = onnx.helper.make_model(only, opset_imports=float_model.opset_import)
    expected, = ort.InferenceSession(alone.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.maximum(before, 0)})
    assert np.allclose(after, expected, rtol=1e-4, atol=1e-4)

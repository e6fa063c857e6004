"""Ascend 310 / 310P without a chip: command lines against the guide's, AIPP generated, parsed and
emulated against our own preprocessing on real WIDER images, the .bin files the tools read and write,
the tools' performance files, the dry-run plan. With CANN and an NPU, the real chain."""

from __future__ import annotations

import json
import shlex
import os
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import calibration, targets
from toolkit.backends.ascend import aipp, bins, commands, perf, toolflow
from toolkit.backends.ascend.backend import AscendBackend
from toolkit.backends.ascend.settings import AscendSettings
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import NHWC_U8, Preprocess, into_batch
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT

LETTERBOX = Preprocess("letterbox", 800, 800)
GUIDE_AIPP = ("aipp_op{ aipp_mode:static input_format:RGB888_U8 src_image_size_w:800 src_image_size_h:800 "
              "crop:false min_chn_0:104 min_chn_1:114 min_chn_2:120 var_reci_chn_0:0.0135864 "
              "var_reci_chn_1:0.0143080 var_reci_chn_2:0.0141014 }")
GUIDE_PERF_BS1 = """[e2e] throughputRate: 33.1307, latency: 97372
[data read] throughputRate: 36.336, moduleLatency: 27.5209
[preprocess] throughputRate: 35.6065, moduleLatency: 28.0847
[infer] throughputRate: 33.4556, Interface throughputRate: 91.86, moduleLatency: 29.2697
[post] throughputRate: 33.4544, moduleLatency: 29.8915
"""


def test_atc_lines_are_the_guides_plus_float32_outputs() -> None:
    guide = shlex.split('atc --framework=5 --model=CenterFace.onnx --input_format=NCHW --input_shape="image:1,3,800,800" '
                        '--output=CenterFace_bs1 --log=error --soc_version=Ascend310')
    ours = commands.atc(Path("CenterFace.onnx"), Path("CenterFace_bs1"), 1, [(800, 800)], "Ascend310")
    assert ours == guide + ["--output_type=FP32"]
    p = commands.atc(Path("CenterFace.onnx"), Path("CenterFace_bs16"), 16, [(800, 800)], "Ascend310P3",
                     Path("aipp_centerface.aippconfig"))
    assert "--soc_version=Ascend310P3" in p and "--input_shape=image:16,3,800,800" in p
    assert p[-3:] == ["--insert_op_conf=aipp_centerface.aippconfig", "--enable_small_channel=1", "--output_type=FP32"]


def test_amct_ais_bench_and_benchmark_lines_are_the_guides() -> None:
    amct = shlex.split('amct_onnx calibration --model x.onnx --save_path ./result/x --input_shape "image:16,3,800,800" '
                       '--data_dir ./calibration_bin --data_types "float32" --batch_num 2')
    ours = commands.amct_calibration(Path("x.onnx"), Path("./result/x"), 16, 800, 800, Path("./calibration_bin"), 2)
    assert ours == [t.removeprefix("./") for t in amct]  # the same paths, as pathlib writes them
    ais = shlex.split("python3 -m ais_bench --model CenterFace_bs1.om --input bins --output result "
                      "--output_dirname dumpout_bs1 --batchsize 1")
    assert commands.ais_bench(Path("CenterFace_bs1.om"), Path("result"), "dumpout_bs1", 1, inputs=Path("bins")) == ais + ["--device", "0"]
    loop = commands.ais_bench(Path("m.om"), Path("result"), "perf", 16, 2, loop=20)
    assert "--input" not in loop and loop[-4:] == ["--device", "2", "--loop", "20"]
    old = shlex.split(f"./{commands.BENCHMARK_TOOL} -model_type=vision -device_id=0 -batch_size=1 -om_path=CenterFace_bs1.om "
                      "-input_text_path=CenterFace_pre_bin.info -input_width=800 -input_height=800 -output_binary=True "
                      "-useDvpp=False")
    assert commands.benchmark(Path("CenterFace_bs1.om"), Path("CenterFace_pre_bin.info"), 1, 800, 800) == old


def test_generated_aipp_is_valid_and_matches_the_official_weights() -> None:
    config = aipp.parse(aipp.generate(800, 800), "generated")
    assert config["aipp_mode"] == "static" and config["input_format"] == "RGB888_U8"
    assert (config["src_image_size_w"], config["src_image_size_h"]) == (800, 800) and config["crop"] is False
    assert [config[f"min_chn_{i}"] for i in range(3)] == [0, 0, 0]
    assert [config[f"var_reci_chn_{i}"] for i in range(3)] == [1.0, 1.0, 1.0]
    guide = aipp.parse(GUIDE_AIPP, "guide")
    assert guide["min_chn_0"] == 104 and guide["var_reci_chn_2"] == pytest.approx(0.0141014)


@pytest.mark.parametrize("text, message", [
    ("aipp_op { aipp_mode : static input_format : RGB888_U8 colour : 1 }", "unknown AIPP key 'colour'"),
    ("aipp_op { aipp_mode : dynamic input_format : RGB888_U8 }", "must be static"),
    ("aipp_op { aipp_mode : static input_format : RGB565 }", "input_format 'RGB565'"),
    ("min_chn_0 : 1", "no `aipp_op"),
])
def test_bad_aipp_configs_are_named(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        aipp.parse(text, "x.aippconfig")


def test_emulated_aipp_equals_our_preprocessing_on_real_images(wider_images: list[Path]) -> None:
    """The 310P path (uint8 HWC -> AIPP on the chip) gives exactly the float input the CPU targets use."""
    config = aipp.parse(aipp.generate(800, 800))
    for path in wider_images[:4]:
        rgb = read_rgb(path)
        image, _ = LETTERBOX.image_u8(rgb)
        ours, _ = LETTERBOX(rgb)
        np.testing.assert_array_equal(aipp.emulate(config, image), ours)
        np.testing.assert_array_equal(into_batch([image], NHWC_U8)[0], image)  # what the pipeline feeds an AIPP .om


def test_guides_aipp_reproduces_its_mean_std_normalisation(wider_images: list[Path]) -> None:
    image, _ = LETTERBOX.image_u8(read_rgb(wider_images[0]))
    mean = np.array([104, 114, 120], np.float32)
    std = 1 / np.array([0.0135864, 0.0143080, 0.0141014], np.float32)
    expected = ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(aipp.emulate(aipp.parse(GUIDE_AIPP), image), expected, rtol=1e-5, atol=1e-5)


def test_emulator_crops_swaps_converts_and_pads() -> None:
    image = np.random.RandomState(0).randint(0, 256, (6, 8, 3), dtype=np.uint8)
    base = {"aipp_mode": "static", "input_format": "RGB888_U8", "src_image_size_w": 8, "src_image_size_h": 6}
    cropped = aipp.emulate({**base, "crop": True, "load_start_pos_w": 2, "load_start_pos_h": 1, "crop_size_w": 4,
                            "crop_size_h": 3}, image)
    np.testing.assert_array_equal(cropped, image[1:4, 2:6].transpose(2, 0, 1))
    swapped = aipp.emulate({**base, "rbuv_swap_switch": True}, image)
    np.testing.assert_array_equal(swapped, image[..., ::-1].transpose(2, 0, 1))
    identity = {f"matrix_r{r}c{c}": 256 if r == c else 0 for r in range(3) for c in range(3)}
    np.testing.assert_array_equal(aipp.emulate({**base, "csc_switch": True, **identity}, image), image.transpose(2, 0, 1))
    padded = aipp.emulate({**base, "padding": True, "top_padding_size": 2, "left_padding_size": 1}, image)
    assert padded.shape == (3, 8, 9) and not padded[:, :2].any() and not padded[:, :, :1].any()
    normalised = aipp.emulate({**base, "padding": True, "top_padding_size": 1, "padding_value": 7, "min_chn_0": 100,
                               "var_reci_chn_0": 0.5}, image)  # normalised first, then the border: 7 as it is
    assert (normalised[:, 0] == 7).all() and np.allclose(normalised[0, 1:], (image[..., 0] - 100.0) * 0.5)
    with pytest.raises(InputError, match="expects 8x6"):
        aipp.emulate(base, image[:5])


def test_input_bins_and_info_file_round_trip(wider_images: list[Path], tmp_path: Path) -> None:
    rgb = read_rgb(wider_images[1])
    chw, _ = LETTERBOX(rgb)
    hwc, _ = LETTERBOX.image_u8(rgb)
    bins.write_input(tmp_path / "a.bin", chw[None])
    bins.write_input(tmp_path / "b.bin", hwc[None])
    assert (tmp_path / "a.bin").stat().st_size == 3 * 800 * 800 * 4 and (tmp_path / "b.bin").stat().st_size == 3 * 800 * 800
    np.testing.assert_array_equal(bins.read_input(tmp_path / "a.bin", 1, 800, 800, aipp=False)[0], chw)
    np.testing.assert_array_equal(bins.read_input(tmp_path / "b.bin", 1, 800, 800, aipp=True)[0], hwc)
    with pytest.raises(InputError, match="expected 2x3x800x800"):
        bins.read_input(tmp_path / "a.bin", 2, 800, 800, aipp=False)
    info = bins.write_info(tmp_path / "x.info", [tmp_path / "a.bin", tmp_path / "b.bin"], 800, 800)
    assert info.read_text().splitlines()[1] == f"1 {tmp_path / 'b.bin'} 800 800"
    assert bins.read_info(info) == [(0, tmp_path / "a.bin", 800, 800), (1, tmp_path / "b.bin", 800, 800)]


def test_calibration_bins_are_named_as_the_guides_and_all_written(tmp_path: Path) -> None:
    batches = (np.full((16, 3, 32, 32), k, np.float32) for k in range(12))
    written = bins.write_calibration(tmp_path, batches)
    assert [p.name for p in written] == [f"img_{k}_bs16.bin" for k in range(12)]  # the guide stopped at 10
    assert np.fromfile(written[3], np.float32).reshape(16, 3, 32, 32).max() == 3


def test_tool_outputs_become_the_same_detections(wider_images: list[Path], official_onnx: Path, tmp_path: Path) -> None:
    """Inputs written as the tools read them; real outputs (ONNX Runtime on the same static model) written
    as ais_bench (from _0) and benchmark (from _1) name them; read back: the pipeline's detections."""
    from toolkit import pipeline
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.model import official

    items = [(f"img/{i}", p) for i, p in enumerate(wider_images[:5])]
    inputs = toolflow.write_inputs(items, LETTERBOX, 2, aipp=False, folder=tmp_path / "input_bs2")
    assert [len(i.keys) for i in inputs] == [2, 2, 1] and (tmp_path / "input_bs2.info").is_file()
    with OnnxRuntimeRunner(official.dynamic_model_bytes(official_onnx)) as runner:
        expected = {}
        pipeline.run(items, runner, LETTERBOX, lambda k, d, _o: expected.__setitem__(k, d), batch_size=1)
        for first in (0, 1):
            out_dir = tmp_path / f"out{first}"
            out_dir.mkdir()
            for entry in inputs:
                batch = bins.read_input(tmp_path / "input_bs2" / f"{entry.stem}.bin", 2, 800, 800, aipp=False)
                for i, array in enumerate(runner.infer(batch).values()):
                    array.astype(np.float32).tofile(out_dir / f"{entry.stem}_{first + i}.bin")
            found = toolflow.detections(out_dir, inputs, first, 2, 800, 800, threshold=0.05)
            assert found.keys() == expected.keys()
            for key, det in expected.items():
                np.testing.assert_allclose(found[key].boxes, det.boxes, atol=1e-3)
                np.testing.assert_allclose(found[key].scores, det.scores, atol=1e-5)
        with pytest.raises(InputError, match="_1.bin: 160000 float32 values, expected heatmap"):  # numbered from 0
            toolflow.detections(tmp_path / "out0", inputs, 1, 2, 800, 800, threshold=0.05)


def test_benchmark_perf_file_gives_chip_and_card_throughput(tmp_path: Path) -> None:
    path = tmp_path / "perf_vision_batchsize_1_device_0.txt"
    path.write_text(GUIDE_PERF_BS1)
    figures = perf.from_benchmark(path, chips_per_card=4).as_dict()
    assert figures["chip_images_per_s"] == 91.86 and figures["images_per_s"] == 367.44 and figures["chips"] == 4
    assert figures["stages"]["e2e"] == {"throughputRate": 33.1307, "latency": 97372.0}
    path.write_text("[e2e] throughputRate: 31.7581, latency: 101580\n"
                    "[inference] throughputRate: 32.022, Interface throughputRate: 80.3537, moduleLatency: 30.4381\n"
                    "[postprocess] throughputRate: 2.00424, moduleLatency: 498.943\n")
    figures = perf.from_benchmark(path, chips_per_card=4).as_dict()
    assert figures["images_per_s"] == 321.41 and "post" in figures["stages"]
    path.write_text("nothing useful\n")
    with pytest.raises(InputError, match="Interface throughputRate"):
        perf.read_benchmark_perf(path)


def test_ais_bench_summary_is_read(tmp_path: Path) -> None:
    path = tmp_path / "perf_bs16_summary.json"
    path.write_text(json.dumps({"NPU_compute_time": {"min": 40.1, "max": 44.0, "mean": 41.2, "median": 41.0, "P99": 43.9,
                                                     "count": 20},
                                "H2D_latency": {"mean": 3.1}, "D2H_latency": {"mean": 1.2}, "throughput": 388.35}))
    figures = perf.from_ais_bench(path, chips_per_card=1).as_dict()
    assert figures["images_per_s"] == 388.35 and figures["npu_compute_ms"]["P99"] == 43.9
    path.write_text("{}")
    with pytest.raises(InputError, match="not an ais_bench summary"):
        perf.read_ais_summary(path)


def test_targets_describe_the_chips() -> None:
    s310, s310p = (AscendSettings.of(targets.load(n)) for n in ("310", "310p"))
    assert (s310.soc_version, s310.chips_per_card, s310.aipp) == ("Ascend310", 4, False)
    assert (s310p.soc_version, s310p.chips_per_card, s310p.aipp) == ("Ascend310P3", 1, True)
    assert targets.load("310p").precision == "int8" and targets.load("310p-fp16").precision == "fp16"
    for name in ("310", "310p", "310p-fp16"):
        t = targets.load(name)
        assert t.batch_sizes == (1, 16) and (t.preprocess.width, t.preprocess.height) == (800, 800)
        assert t.runs_in == "container" and t.extra["container"]["devices"] == "ascend"
        assert t.export_opset == 16  # CANN 8.0's AMCT: ONNX 1.14, opset 16


@pytest.mark.parametrize("name, soc, aipp_expected", [("310", "Ascend310", False), ("310p", "Ascend310P3", True)])
def test_dry_run_prints_every_command_and_writes_the_aipp(name: str, soc: str, aipp_expected: bool, tmp_path: Path) -> None:
    out = tmp_path / name
    result = invoke("run", "--target", name, "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n    ", " ")
    atc_lines = [line for line in result.output.splitlines() if line.strip().startswith("$ atc ")]
    assert len(atc_lines) == 2 and all(f"--soc_version={soc}" in line for line in atc_lines)
    assert all(("--insert_op_conf=/runs/" in line) == aipp_expected for line in atc_lines)
    assert "python3 -m ais_bench --model /runs/" in text and "--loop 20" in text
    assert ("amct_onnx calibration --model" in text) == (name == "310p")
    # as the invoking user with the driver nodes' group, not root; exactly the run folder, the cache and the data
    user = f"--user {os.getuid()}:{os.getgid()} --group-add"
    assert f"docker run --rm --network none {user} " in text and "--device /dev/davinci0:/dev/davinci0:rwm" in text
    assert f"-v {out}:/runs/{name} " in text and f"-v {out.parent}:" not in text
    plan = json.loads((out / "plan.json").read_text())
    assert plan["runs_in"] == "container" and plan["unavailable"] is None or "CANN" in plan["unavailable"]
    if aipp_expected:
        config = aipp.parse((out / "aipp_centerface.aippconfig").read_text())
        assert config["input_format"] == "RGB888_U8" and config["min_chn_0"] == 0
    assert not (out / "result.json").exists()


def test_310p_dry_run_calibrates_on_the_whole_set_and_mounts_what_npu_smi_needs(tmp_path: Path) -> None:
    skipped = ["/backbone/features.1/conv/conv.2/Conv", "/head/pos_conv/Conv"]  # as a search's snippet pins them
    pinned = tmp_path / "310p-pinned.toml"
    pinned.write_text(f'extends = "{REPO_ROOT / "targets" / "310p.toml"}"\n[calibration]\nskip_layers = {json.dumps(skipped)}\n')
    result = invoke("run", "--target", pinned, "--dry-run", "--out", tmp_path / "310p")
    assert result.exit_code == 0, result.output
    plan_ = json.loads((tmp_path / "310p" / "plan.json").read_text())
    (amct,) = [s["command"] for s in plan_["steps"] if s["command"] and s["command"][0] == "amct_onnx"]
    recipe = calibration.recipe_for(targets.load("310p"))
    batches = -(-recipe.count // recipe.batch_size)  # 32 images: 2 of 16
    config = (tmp_path / "310p" / "amct" / "calibration.cfg").read_text()  # the layers AMCT skips
    assert "--batch_num" not in amct and amct[amct.index("--calibration_config") + 1] == "/runs/310p/amct/calibration.cfg"
    assert config.startswith(f"batch_num : {batches}\n") and config.count("skip_layers : ") == len(skipped)
    assert all(f'"{name}"' in config for name in skipped)
    docker = " ".join(plan_["container"])
    for host_path in ("/usr/local/sbin/npu-smi", "/usr/local/dcmi", "/etc/ascend_install.info"):
        assert f"-v {host_path}:{host_path}:ro" in docker
    assert "-e ASCEND_DEVICE_ID=0" in docker


def test_gear_models_get_their_gear_on_every_ais_bench_line(tmp_path: Path) -> None:
    result = invoke("run", "--target", "310-buckets", "--dry-run", "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    steps = json.loads((tmp_path / "g" / "plan.json").read_text())["steps"]
    lines = [s["command"] for s in steps if s["command"] and s["command"][:3] == ["python3", "-m", "ais_bench"]]
    gears = AscendSettings.of(targets.load("310-buckets")).sizes
    assert len(lines) == 2 * len(gears)  # batch 1 and 16, each gear
    assert sorted(line[line.index("--dymHW") + 1] for line in lines) == sorted([f"{h},{w}" for w, h in gears] * 2)


def test_int8_with_gears_and_a_cann_without_the_chip_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "310p-gears.toml"
    path.write_text(f'extends = "{REPO_ROOT / "targets" / "310p.toml"}"\n[input]\npreprocess = "buckets"\n'
                    'buckets = [[1024, 576], [1024, 1024]]\n')
    with pytest.raises(InputError, match="INT8 with gears .2 input sizes.: AMCT's deploy model cannot take atc "
                                         "--dynamic_image_size"):
        AscendSettings.of(targets.load(str(path)))
    bad = tmp_path / "310-opset.toml"
    bad.write_text(f'extends = "{REPO_ROOT / "targets" / "310.toml"}"\nexport_opset = 99\n')
    with pytest.raises(InputError, match="export_opset must be a whole number from 13 to 20, not 99"):
        targets.load(str(bad))
    s310 = AscendSettings.of(targets.load("310"))
    assert s310.cann_problem("8.0.0") is None and "8.5 dropped the Ascend310" in s310.cann_problem("8.5.0")
    assert AscendSettings.of(targets.load("310p")).cann_problem("8.5.0") is None


def test_the_deploy_models_ascend_operators_pass_make_static(cpu_run: Path, tmp_path: Path) -> None:
    """AMCT's deploy model holds AscendQuant / AscendDequant in the default domain, which ONNX's checker
    refuses ("No Op registered"); make_static fixes its input and leaves the checking to atc."""
    import onnx
    from onnx import helper

    from toolkit.model.static import make_static, vendor_ops

    model = onnx.load(str(cpu_run / "centerface.onnx"))
    first = model.graph.node[0]
    quant = helper.make_node("AscendQuant", [first.input[0]], ["q"], scale=0.5, offset=0.0)
    dequant = helper.make_node("AscendDequant", ["q"], ["dq"])
    first.input[0] = "dq"
    model.graph.node.insert(0, dequant)
    model.graph.node.insert(0, quant)
    path = tmp_path / "deploy.onnx"
    onnx.save(model, str(path))
    with pytest.raises(onnx.checker.ValidationError, match="No Op registered for AscendQuant"):
        onnx.checker.check_model(model)
    static = onnx.load(str(make_static(path, tmp_path / "bs16.onnx", 16, 800, 800)))
    assert vendor_ops(static) == ["AscendDequant", "AscendQuant"]
    assert [d.dim_value for d in static.graph.input[0].type.tensor_type.shape.dim] == [16, 3, 800, 800]


def test_without_cann_the_target_is_unavailable_and_the_report_says_so(tmp_path: Path, cpu_run: Path) -> None:
    backend = AscendBackend()
    if backend.unavailable() is None:
        pytest.skip("this machine has CANN and an NPU")
    result = invoke("run", "--target", "310", "--mode", "host", "--out", tmp_path / "310")
    assert result.exit_code == 3 and "unavailable: target 310: Ascend CANN missing here" in result.output
    import shutil
    shutil.copytree(cpu_run, tmp_path / "runs" / "cpu")
    report = invoke("report", "--runs", tmp_path / "runs")
    rows = {r["target"]: r for r in json.loads((tmp_path / "runs" / "report.json").read_text())["rows"]}
    assert report.exit_code == 0 and rows["310p"]["status"] == "unavailable" and "atc" in rows["310p"]["reason"]
    assert rows["310 (guide)"]["status"] == "published"


def test_settings_refuse_what_an_om_cannot_take(tmp_path: Path) -> None:
    path = tmp_path / "npu.toml"
    path.write_text('name = "npu"\nbackend = "ascend"\n[input]\npreprocess = "native"\n[ascend]\nsoc_version = "Ascend310"\n')
    with pytest.raises(InputError, match="must be letterbox"):
        AscendSettings.of(targets.load(str(path)))
    path.write_text('name = "npu"\nbackend = "ascend"\n[ascend]\nsoc_version = "Ascend910"\n')
    with pytest.raises(InputError, match="soc_version 'Ascend910'"):
        AscendSettings.of(targets.load(str(path)))


def test_static_onnx_gives_the_dynamic_models_outputs(cpu_run: Path, wider_images: list[Path], tmp_path: Path) -> None:
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.model.static import make_static

    batch = np.stack([LETTERBOX(read_rgb(p))[0] for p in wider_images[:2]])
    static = make_static(cpu_run / "centerface.onnx", tmp_path / "bs2.onnx", 2, 800, 800)
    with OnnxRuntimeRunner(cpu_run / "centerface.onnx") as dynamic, OnnxRuntimeRunner(static) as fixed:
        for name, array in dynamic.infer(batch).items():
            np.testing.assert_array_equal(fixed.infer(batch)[name], array)


@pytest.mark.hardware
def test_the_chain_on_an_npu(tmp_path: Path, data_root: Path) -> None:
    reason = AscendBackend().unavailable()
    if reason:
        pytest.skip(f"unavailable: {reason}")
    result = invoke("run", "--target", "310p-fp16", "--mode", "host", "--data", data_root, "--limit", 32, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["ap"]["easy"] > 0.85 and saved["tool_throughput"]["1"]["images_per_s"] > 0


def test_report_shows_chip_and_card_throughput_and_the_fake_quant_ap(tmp_path: Path) -> None:
    from toolkit.report.table import rows

    path = tmp_path / "perf_vision_batchsize_1_device_0.txt"
    path.write_text(GUIDE_PERF_BS1)
    ap = {"easy": 0.93, "medium": 0.92, "hard": 0.79}
    for run in ("cpu", "310p"):  # both evaluated the same image: their deltas are their APs'
        (tmp_path / run / "predictions" / "0--Parade").mkdir(parents=True)
        (tmp_path / run / "predictions" / "0--Parade" / "a.txt").write_text("a\n0\n")
    cpu = {"_run": "cpu", "_dir": str(tmp_path / "cpu"), "target": "cpu", "precision": "fp32", "ap": ap}
    on_310 = {"_run": "310", "target": "310", "precision": "fp16", "ap": ap, "batch_size": 1,
              "throughput": {"images_per_s": 30.0}, "tool_throughput": {"1": perf.from_benchmark(path, 4).as_dict()}}
    on_310p = {"_run": "310p", "_dir": str(tmp_path / "310p"), "target": "310p", "precision": "int8", "ap": ap,
               "calibration": {"method": "amct", "onnx_twin_ap": {"easy": 0.925, "medium": 0.915, "hard": 0.785}}}
    table = rows([cpu, on_310, on_310p])
    (row,) = [r for r in table if r["target"] == "310" and r["source"] == "measured"]
    assert row["tool_images_per_s"] == 367.44 and row["tool"] == "benchmark: 91.86 x 4 chips"
    (fake,) = [r for r in table if r["target"] == "310p [AMCT fake-quant, onnxruntime]"]
    assert fake["status"] == "passed" and fake["delta_hard"] == -0.5


AIS_BENCH = json.loads((Path(__file__).parent / "data" / "ascend" / "ais_bench_interface.json").read_text())


def test_every_ais_bench_call_matches_the_real_interface() -> None:
    """Each InferSession call of the backend (AST), against the signatures recorded from ais_bench's source
    at a pinned commit (tests/data/ascend/ais_bench_interface.json says where)."""
    import ast

    from toolkit.backends.ascend import backend

    api = AIS_BENCH["InferSession"]
    calls = []
    for node in ast.walk(ast.parse(Path(backend.__file__).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "self.session":
            calls.append((node.func.attr, node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "InferSession":
            calls.append(("__init__", node))
    assert {name for name, _ in calls} >= {"__init__", "infer", "run", "set_dynamic_hw", "free_resource", "get_inputs"}
    for name, call in calls:
        assert name in api, f"InferSession.{name} is not in ais_bench"
        params, given = api[name]["params"], len(call.args) + sum(isinstance(a, ast.Starred) for a in call.args)
        assert {k.arg for k in call.keywords} <= set(params), (name, ast.unparse(call))
        assert any(isinstance(a, ast.Starred) for a in call.args) or api[name]["required"] <= given + len(call.keywords) \
            and len(call.args) <= len(params), (name, ast.unparse(call))
    assert set(backend.INFER_SESSION_API) <= set(api)


def test_every_ais_bench_command_line_uses_its_real_flags() -> None:
    line = commands.ais_bench(Path("m.om"), Path("out"), "perf", 16, 2, inputs=Path("bins"), loop=20, gear=(576, 1024))
    flags = [arg for arg in line if arg.startswith("--")]
    assert set(flags) <= set(AIS_BENCH["cli_flags"]) and line[line.index("--dymHW") + 1] == "576,1024"  # h,w


def test_the_unrelated_ais_bench_package_is_not_taken_for_ascends(tmp_path: Path) -> None:
    """PyPI's ais-bench-benchmark (an LLM evaluation tool some images carry) also installs a package named
    `ais_bench`; the backend looks for ais_bench.infer.interface and aclruntime, so it is not found."""
    import os
    import subprocess
    import sys
    import zipfile

    from vendor import wheel

    with zipfile.ZipFile(wheel("ais-bench-benchmark==3.1.20260630")) as whl:
        whl.extractall(tmp_path)
    probe = ("import importlib.util; from toolkit.backends.ascend.cann import Cann; "
             "print(importlib.util.find_spec('ais_bench') is not None, Cann.find().ais_bench)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]


def test_in_the_container_the_chips_are_numbered_from_0(monkeypatch) -> None:
    from toolkit.backends.ascend.cann import Cann

    monkeypatch.setenv("CENTERFACE_HOST_DEVICE_IDS", "2,3")  # what the run spec gives a container of chips 2 and 3
    assert Cann.chips() == [0, 1]


def test_each_batch_finds_its_own_om_whatever_suffix_atc_adds(tmp_path: Path) -> None:
    """atc names its output <stem>.om, or <stem>_linux_<arch>.om on some CANN versions (as real hosts' files
    show, e.g. `atc --output=action_stgcn` writing action_stgcn_linux_aarch64.om): centerface_bs16_linux_aarch64.om
    sorts before centerface_bs1_linux_aarch64.om, and must not be taken for batch 1's."""
    from toolkit.backends.ascend import plan

    for name in ("centerface_bs16_linux_aarch64.om", "centerface_bs1_linux_aarch64.om", "centerface_bs16.om.bak"):
        (tmp_path / name).write_bytes(b"om")
    assert plan.find_om(tmp_path, 1).name == "centerface_bs1_linux_aarch64.om"
    assert plan.find_om(tmp_path, 16).name == "centerface_bs16_linux_aarch64.om"
    assert [p.name for p in plan.om_files(tmp_path, 1)] == ["centerface_bs1_linux_aarch64.om"]
    with pytest.raises(InputError, match="no .*centerface_bs4.om"):
        plan.find_om(tmp_path, 4)


def test_the_older_benchmark_tool_gets_one_bin_per_image(wider_images: list[Path], tmp_path: Path) -> None:
    """benchmark.<arch> batches the images itself (-batch_size): its info file lists one .bin per image."""
    items = [(f"img/{i}", p) for i, p in enumerate(wider_images[:3])]
    written = toolflow.write_images(items, LETTERBOX, aipp=True, folder=tmp_path / "input_images")
    assert [len(w.keys) for w in written] == [1, 1, 1]
    entries = bins.read_info(tmp_path / "input_images.info")
    assert len(entries) == 3 and all(path.stat().st_size == 800 * 800 * 3 for _, path, _, _ in entries)  # uint8 HWC


def test_amct_runs_where_its_log_stays_in_the_run_folder(tmp_path: Path) -> None:
    result = invoke("run", "--target", "310p", "--dry-run", "--out", tmp_path / "310p")
    assert result.exit_code == 0, result.output
    steps = json.loads((tmp_path / "310p" / "plan.json").read_text())["steps"]
    (amct,) = [s for s in steps if s["command"] and s["command"][0] == "amct_onnx"]
    assert "run in /runs/310p/amct (where AMCT writes amct_log/)" in amct["title"]

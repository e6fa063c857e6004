"""Calibration sets and INT8 on the CPU: reproducible sets, real ORT quantisation, the report."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import onnx
import pytest

from cli import invoke
from toolkit.calibration import RECIPES_DIR, build, load_recipe
from toolkit.data.wider import list_val_images
from toolkit.errors import InputError
from toolkit.paths import sample_image
from toolkit.quantization import evaluation_items



@pytest.fixture
def small_target(tmp_path: Path) -> Path:
    """cpu-int8 with a 2-image recipe, one method and two float variants, so the whole flow runs in seconds."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('images = "wider_val_calibration.txt"\ncount = 2\npreprocess = "native"\nbatch_size = 1\n')
    target = tmp_path / "cpu-int8-tiny.toml"
    text = (Path(__file__).parents[1] / "targets" / "cpu-int8.toml").read_text()
    text = text.replace('name = "cpu-int8"', 'name = "cpu-int8-tiny"').replace('recipe = "cpu"', f'recipe = "{recipe}"')
    text = re.sub(r"(?m)^keep_float = .*$", 'keep_float = [[], ["/head/*"]]', text)
    target.write_text(re.sub(r"(?m)^methods = .*$", 'methods = ["minmax"]', text))
    return target


def test_recipes_and_their_image_list() -> None:
    for name in ("cpu", "ascend", "tensorrt"):
        recipe = load_recipe(name)
        assert len(recipe.keys()) == recipe.count
    assert load_recipe("ascend").pre().describe() == "letterbox 800x800"
    assert load_recipe("cpu", count=4).key() != load_recipe("cpu").key()
    listed = (RECIPES_DIR / "wider_val_calibration.txt").read_text().split()
    assert len(listed) == len(set(listed)) == 61  # one image per event


@pytest.mark.parametrize("name, kwargs, message", [
    ("nope", {}, "calibration recipe 'nope'"),
    ("cpu", {"batch_size": 4}, "native sizes differ"),
    ("cpu", {"count": 500}, "lists 61 images"),
])
def test_bad_recipes(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_recipe(name, **kwargs).image_names()


def test_the_same_recipe_gives_the_same_set(data_root: Path, tmp_path: Path) -> None:
    recipe = load_recipe("ascend", count=3, batch_size=2)
    first, reused = build(recipe, data_root, tmp_path / "a")
    again, reused_again = build(recipe, data_root, tmp_path / "a")
    elsewhere, _ = build(recipe, data_root, tmp_path / "b")
    assert not reused and reused_again
    assert first.sha256 == again.sha256 == elsewhere.sha256
    assert first.manifest["shapes"] == [[2, 3, 800, 800], [1, 3, 800, 800]]
    assert [b.shape[0] for b in first.batches()] == [2, 1]
    assert first.manifest["images"] == recipe.image_names()
    changed, _ = build(load_recipe("ascend", count=2, batch_size=2), data_root, tmp_path / "a")
    assert changed.folder != first.folder and changed.sha256 != first.sha256


def test_calibration_images_are_outside_the_evaluation(data_root: Path) -> None:
    items = list_val_images(data_root)
    for name in ("cpu", "ascend"):
        recipe = load_recipe(name)
        kept = recipe.left_out(items)
        assert len(kept) == len(items) - recipe.count  # each calibration image is a subset image, taken out once
        assert {k for k, _ in kept}.isdisjoint(recipe.keys())
        assert [k for k, _ in kept] == [k for k, _ in items if k not in recipe.keys()]  # the rest, in order
        assert evaluation_items(recipe, data_root, limit=5) == kept[:5]


def test_calibrate_quantises_and_reports(small_target: Path, data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CENTERFACE_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "run"
    result = invoke("calibrate", "--target", small_target, "--data", data_root, "--limit", 6, "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "calibration_report.json").read_text())
    assert [r["config"] for r in report["rows"]] == ["fp32", "minmax", "minmax, float: /head/*"]
    assert report["evaluated_images"] == 6 and len(report["calibration_images"]) == 2
    assert report["best"] in {"minmax", "minmax, float: /head/*"}
    for row in report["rows"][1:]:
        assert row["infer_images_per_s"] > 0 and row["size_mb"] < report["rows"][0]["size_mb"]
        assert -10 < row["delta_hard"] < 10
    ops = {n.op_type for n in onnx.load(str(out / "centerface.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "Best" in (out / "calibration_report.md").read_text()
    ranges = list((out / "calibration" / "cache").glob("ranges-*-minmax-equalised.json"))
    assert len(ranges) == 1  # computed once, reused by the second variant
    models = sorted(p.name for p in (out / "calibration").glob("*.onnx"))
    assert models == ["centerface.int8.minmax-float-head.onnx", "centerface.int8.minmax.onnx"]
    # Calibrating again from the cached ranges reproduces the same AP.
    again = invoke("calibrate", "--target", small_target, "--data", data_root, "--limit", 6, "--out", out)
    assert again.exit_code == 0, again.output
    rows = json.loads((out / "calibration_report.json").read_text())["rows"]
    assert [r["hard"] for r in rows] == [r["hard"] for r in report["rows"]]


def test_run_int8_leaves_calibration_images_out(small_target: Path, data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CENTERFACE_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "run"
    items = list_val_images(data_root)
    calib = load_recipe(str(small_target.parent / "tiny.toml")).keys()
    first_calib = next(i for i, (k, _) in enumerate(items) if k in calib)
    limit = first_calib + 2  # the slice holds one calibration image
    result = invoke("run", "--target", small_target, "--data", data_root, "--limit", limit, "--out", out)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["precision"] == "int8" and saved["images"] == limit - 1
    assert saved["calibration"]["images"] == 2 and saved["calibration"]["excluded_from_evaluation"]
    assert not (out / "predictions" / f"{items[first_calib][0]}.txt").exists()
    again = invoke("run", "--target", small_target, "--data", data_root, "--limit", limit, "--out", out)
    assert again.exit_code == 0 and "INT8 model from the earlier calibration" in again.output
    assert json.loads((out / "result.json").read_text())["ap"] == saved["ap"]


def test_int8_calibrates_on_the_users_own_images_and_never_evaluates_them(small_target: Path, data_root: Path,
                                                                         tmp_path: Path) -> None:
    """--calib-data: any folder of images (here a WIDER image copied under another name, and a photo from
    elsewhere); the set records where its images came from, and the copied image is left out of the evaluation
    by its content."""
    items = list_val_images(data_root)
    own = tmp_path / "my photos"
    (own / "trip").mkdir(parents=True)
    shutil.copyfile(items[0][1], own / "holiday.jpg")
    shutil.copyfile(sample_image(), own / "trip" / "portrait.jpg")
    out = tmp_path / "run"
    result = invoke("run", "--target", small_target, "--data", data_root, "--limit", 4, "--calib-data", own,
                    "--out", out)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["images"] == 3 and not (out / "predictions" / f"{items[0][0]}.txt").exists()
    assert saved["calibration"]["source"] == f"the user's folder {own} (--calib-data)"
    report = json.loads((out / "calibration_report.json").read_text())
    manifest = json.loads((Path(report["calibration_set"]) / "manifest.json").read_text())
    assert manifest["images"] == [str(own / "holiday.jpg"), str(own / "trip" / "portrait.jpg")]
    assert manifest["image_sha256"][0] == hashlib.sha256(items[0][1].read_bytes()).hexdigest()
    assert "1 of the 4 chosen images are among them" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = invoke("run", "--target", small_target, "--data", data_root, "--calib-data", empty, "--out", out)
    assert refused.exit_code == 2 and f"{empty}: no images" in refused.output
    refused = invoke("run", "--target", "cpu", "--calib-data", own, "--out", tmp_path / "fp32")
    assert refused.exit_code == 2 and "not an INT8 target" in refused.output


def test_a_root_without_the_recipes_images_says_how_to_give_some(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="calibration image missing") as error:
        build(load_recipe("cpu", count=2), tmp_path, tmp_path / "cache")
    assert "--calib-data DIR" in error.value.hint


def test_int8_needs_the_dataset(small_target: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CENTERFACE_DATA", str(tmp_path / "none"))
    result = invoke("run", "--target", small_target, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "INT8 calibration needs the WIDER FACE images" in result.output
    result = invoke("calibrate", "--target", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "calibration is for INT8 targets" in result.output


def test_unknown_method_is_refused_before_any_work(small_target: Path, data_root: Path, tmp_path: Path) -> None:
    result = invoke("calibrate", "--target", small_target, "--data", data_root, "--methods", "kl",
                    "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "calibration method 'kl': onnxruntime offers minmax, entropy, percentile" in result.output
    assert not (tmp_path / "run" / "calibration_report.json").exists()


def test_a_sweep_whose_images_lack_a_setting_prints_dashes(small_target: Path, data_root: Path, tmp_path: Path) -> None:
    """One evaluation image with no easy face: that AP is None, shown as '-', and the folder is whole."""
    out = tmp_path / "run"
    result = invoke("calibrate", "--target", small_target, "--data", data_root, "--limit", 1, "--out", out)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "calibration_report.json").read_text())["rows"]
    assert all(r["easy"] is None and r["delta_easy"] is None for r in rows) and all(r["hard"] is not None for r in rows)
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("config "))
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[header + 2: header + 2 + len(rows)]]
    assert [c[:2] for c in cells] == [[r["config"], "-"] for r in rows] and (out / "centerface.int8.onnx").is_file()


def test_the_model_has_the_flops_the_issue_counts_and_blocks_0_to_3_a_quarter(cpu_run: Path) -> None:
    """FLOPs from ONNX's shape inference at 800x800: 7.71 GFLOP, blocks 0-3 1.93 of them (issue 33's count)."""
    from toolkit.sensitivity import conv_flops

    convs = conv_flops(cpu_run / "centerface.onnx", 800, 800)
    total = sum(c["flops"] for c in convs.values())
    first = sum(c["flops"] for c in convs.values() if c["block"] in ("features.0", "features.1", "features.2", "features.3"))
    assert round(total / 1e9, 2) == 7.71 and round(first / 1e9, 2) == 1.93
    assert {c["block"] for c in convs.values()} >= {"features.0", "features.17", "neck", "head"}


def test_compare_outputs_layers_gives_each_convolutions_error_flops_and_block(small_target: Path, cpu_run: Path,
                                                                             data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    assert invoke("run", "--target", small_target, "--data", data_root, "--limit", 3, "--out", out).exit_code == 0
    result = invoke("compare-outputs", cpu_run, out, "--layers", "--images", 1, "--data", data_root,
                    "--json", tmp_path / "layers.json")
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "layers.json").read_text())
    model = onnx.load(str(cpu_run / "centerface.onnx"))
    assert len(found["convolutions"]) == sum(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)
    quantised = [c for c in found["convolutions"] if c["vs_float_sqnr_db"] is not None]
    assert len(quantised) > 50 and all(0 < c["vs_float_sqnr_db"] and 0 < c["local_sqnr_db"] for c in quantised)
    assert abs(sum(c["flops_share"] for c in found["convolutions"]) - 1) < 1e-3
    assert (tmp_path / "layers.png").read_bytes().startswith(b"\x89PNG")
    assert "features.17" in result.output and "vs float dB" in result.output
    refused = invoke("compare-outputs", cpu_run, cpu_run, "--layers", "--images", 1, "--data", data_root,
                     "--json", tmp_path / "same.json")
    assert refused.exit_code == 2 and "no Q/DQ pair" in refused.output


@pytest.mark.parametrize("answer", [0, 1, 5, 17, 40, 63])
def test_the_search_finds_the_shortest_prefix_in_about_2_log2_n_evaluations(answer: int) -> None:
    from toolkit.search import _least_prefix

    asked: list[int] = []
    found = _least_prefix(lambda k: asked.append(k) or k >= answer, 63)
    assert found == answer and len(set(asked)) <= 2 * 6 + 1


def test_calibrate_search_writes_the_float_set_its_curve_and_the_target_lines(small_target: Path, data_root: Path,
                                                                               tmp_path: Path) -> None:
    import tomllib

    out = tmp_path / "run"
    result = invoke("calibrate", "--target", small_target, "--data", data_root, "--limit", 8, "--search", "--out", out)
    assert result.exit_code == 0, result.output
    found = json.loads((out / "search.json").read_text())
    assert found["selection_images"] == 4 and found["confirmation_images"] == 4
    ks = [len(p["float"]) for p in found["points"]]
    assert ks == sorted(ks) and ks[0] == 0 and found["chosen"] in found["points"]
    assert found["chosen"]["within"] or len(found["chosen"]["float"]) == len(found["ranking"])
    shares = [c["flops_share"] for c in found["ranking"]]
    assert all(0 < s < 1 for s in shares) and len({c["node"] for c in found["ranking"]}) == len(shares)
    kept = tomllib.loads((out / "search.toml").read_text())["calibration"]["keep_float"]
    assert kept == [found["chosen"]["float"]]
    assert set(found["confirmation"]) >= {"delta_easy", "delta_medium", "delta_hard", "within_budget"}
    assert (out / "search.png").read_bytes().startswith(b"\x89PNG") and "chosen:" in result.output

"""Calibration sets and INT8 on the CPU: reproducible sets, real ORT quantisation, the report."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from cli import invoke
from toolkit.calibration import RECIPES_DIR, build, load_recipe
from toolkit.data.wider import list_val_images
from toolkit.errors import InputError
from toolkit.quantization import evaluation_items



@pytest.fixture
def small_target(tmp_path: Path) -> Path:
    """cpu-int8 with a 2-image recipe and one method, so the whole flow runs in seconds."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('images = "wider_val_calibration.txt"\ncount = 2\npreprocess = "native"\nbatch_size = 1\n')
    target = tmp_path / "cpu-int8-tiny.toml"
    text = (Path(__file__).parents[1] / "targets" / "cpu-int8.toml").read_text()
    text = text.replace('name = "cpu-int8"', 'name = "cpu-int8-tiny"').replace('recipe = "cpu"', f'recipe = "{recipe}"')
    target.write_text(text.replace('methods = ["minmax", "entropy", "percentile"]', 'methods = ["minmax"]'))
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
    ranges = list((out / "calibration" / "cache").glob("ranges-*-minmax.json"))
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
    assert "│    - │" in result.output and (out / "centerface.int8.onnx").is_file()

"""Test-time augmentation: the passes' geometry on native and fixed-shape targets (mirrors, tiles), the two
merges, and real runs: deterministic, more AP than a single scale, on the CPU and emulated fixed-shape targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import targets
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.tta import TtaPlan, mirrored, views
from toolkit.errors import InputError
from toolkit.postprocess import Detections, merged

GEARS = Preprocess("buckets", buckets=((1024, 576), (1024, 768), (1024, 1024), (1024, 1568)))


@pytest.mark.parametrize("width, height", [(1024, 683), (1024, 1060), (1193, 1024), (1024, 1600)])  # 800 / 1060 * 1060 > 800
def test_the_1x_pass_is_the_targets_own_input_untiled(width: int, height: int) -> None:
    for pre in (Preprocess("native"), Preprocess("letterbox", 800, 800), GEARS):
        first = views(pre, TtaPlan(), width, height)[0]
        assert first.scale == 1.0 and not first.tiled and first.transform == pre.transform(width, height)


def test_each_mirror_follows_its_original() -> None:
    for pre in (Preprocess("native"), Preprocess("letterbox", 800, 800), GEARS):
        seen = views(pre, TtaPlan(flip=(0.5, 1.0, 2.0)), 1024, 683)
        assert [(v.scale, v.mirrored) for v in seen[:2]] == [(1.0, False), (1.0, True)]
        assert [v.scale for v in views(pre, TtaPlan(), 1024, 683, upscaled=False)] == [1.0, 1.0, 0.5]  # 1x mirrored
        assert {v.scale for v in views(pre, TtaPlan(), 1024, 683, upscaled=True)} == {2.0}
        assert all(m.mirrored and m.transform == mirrored(o.transform) for o, m in zip(seen[::2], seen[1::2]))


def test_a_mirrored_pass_maps_its_boxes_back_onto_the_same_face(wider_images: list[Path]) -> None:
    rgb = read_rgb(wider_images[1])
    original, mirror = views(Preprocess("native"), TtaPlan(scales=(1.0,)), rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(mirror.image(rgb), original.image(rgb)[:, ::-1])
    face = np.array([[100.0, 50.0, 180.0, 150.0]])  # original pixels
    t, m = original.transform, mirror.transform
    on_mirror = np.column_stack([t.in_width - (face[:, 2] * t.sx), face[:, 1] * t.sy,
                                 t.in_width - (face[:, 0] * t.sx), face[:, 3] * t.sy])
    back = m.to_original(on_mirror)
    np.testing.assert_allclose(back[:, [2, 1, 0, 3]], face, atol=1e-9)


def test_a_pass_larger_than_a_fixed_input_becomes_overlapping_tiles_that_cover_the_image() -> None:
    plan = TtaPlan(scales=(2.0,), flip=())
    tiles = views(GEARS, plan, 1024, 768)  # 2048 x 1536: no gear holds it; the largest, 1024 x 1568, tiled
    assert {(v.transform.in_width, v.transform.in_height) for v in tiles} == {(1024, 1568)}
    assert [v.tile for v in tiles] == [(0, 0), (1, 0), (2, 0)]  # 3 across (overlap 128), one row holds 1536
    assert tiles[0].cuts == (False, False, True, False) and tiles[1].cuts == (True, False, True, False)
    covered = np.zeros(2048, bool)
    for v in tiles:
        covered[int(-v.transform.tx): int(-v.transform.tx) + 1024] = True
    assert covered.all()
    small = views(GEARS, TtaPlan(scales=(0.5,), flip=()), 1024, 768)  # 512 x 384: the smallest gear, unenlarged
    assert len(small) == 1 and small[0].transform.sx == 0.5 and (small[0].transform.in_width,
                                                                 small[0].transform.in_height) == (1024, 576)


def test_boxes_at_a_tiles_cut_edge_are_dropped_and_whole_ones_kept() -> None:
    tile = views(Preprocess("letterbox", 800, 800), TtaPlan(scales=(2.0,), flip=()), 1024, 683)[0]
    assert tile.cuts[2]  # its right edge cuts the 2x image
    right = (800 - tile.transform.tx) / tile.transform.sx  # the cut, in original pixels
    boxes = np.array([[10, 10, 40, 40], [right - 30, 10, right, 40]], np.float32)
    assert tile.uncut(boxes).tolist() == [True, False]
    row = views(Preprocess("letterbox", 800, 800), TtaPlan(scales=(2.0,), flip=()), 1024, 300)  # one row: 600 high
    assert row[1].cuts == (True, False, True, False) and row[1].uncut(boxes).tolist() == [False, True]


def test_nms_keeps_the_best_box_and_voting_averages_its_cluster_by_score() -> None:
    a = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.zeros((1, 10), np.float32))
    b = Detections(np.array([[2, 0, 12, 10]], np.float32), np.array([0.3], np.float32), np.ones((1, 10), np.float32))
    far = Detections(np.array([[50, 50, 60, 60]], np.float32), np.array([0.5], np.float32), np.zeros((1, 10), np.float32))
    best = merged([a, b, far], "nms", 0.3)
    np.testing.assert_array_equal(best.boxes, [[0, 0, 10, 10], [50, 50, 60, 60]])
    voted = merged([a, b, far], "vote", 0.3)
    np.testing.assert_allclose(voted.boxes[0], [0.5, 0, 10.5, 10], atol=1e-6)  # (0.9 * 0 + 0.3 * 2) / 1.2
    np.testing.assert_allclose(voted.scores, [0.9, 0.5])
    np.testing.assert_allclose(voted.landmarks[0], 0.25, atol=1e-6)
    np.testing.assert_array_equal(voted.boxes[1], far.boxes[0])


def test_a_bad_tta_table_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cpu-bad.toml"
    bad.write_text('backend = "onnxruntime"\n[tta]\nmerge = "mean"\n')
    with pytest.raises(InputError, match=r"cpu-bad.toml \[tta\]: tta merge 'mean'"):
        targets.load(str(bad))
    bad.write_text('backend = "onnxruntime"\n[tta]\nscales = []\n')
    with pytest.raises(InputError, match="cpu-bad.toml"):
        targets.load(str(bad))


def _run(out: Path, data_root: Path, *extra: object) -> dict:
    result = invoke("run", "--target", "cpu", "--data", data_root, "--limit", 16, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "result.json").read_text())


def _predictions(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "predictions").rglob("*.txt"))}


def test_tta_on_the_cpu_finds_more_small_faces_and_twice_the_same_run_writes_the_same_bytes(
        data_root: Path, tmp_path: Path) -> None:
    single = _run(tmp_path / "single", data_root)
    first = _run(tmp_path / "tta", data_root, "--tta")
    again = _run(tmp_path / "again", data_root, "--tta")
    assert first["ap"]["hard"] > single["ap"]["hard"] + 0.01
    assert _predictions(tmp_path / "tta") == _predictions(tmp_path / "again")
    tta = first["tta"]
    assert tta["scales"] == list(targets.load("cpu").tta_plan.scales) and tta["merge"] == again["tta"]["merge"]
    assert all(s["tiles"] == 0 for s in tta["per_scale"].values())  # native: any size, no tiles
    assert "tta" not in single or single["tta"] is None


def test_emulated_fixed_shape_targets_run_tta_in_emulation_and_say_how_passes_met_the_input(
        data_root: Path, tmp_path: Path) -> None:
    result = invoke("run", "--target", "t4", "--mode", "emulate", "--tta", "--data", data_root, "--limit", 3,
                    "--out", tmp_path / "t4")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "t4" / "result.json").read_text())
    assert saved["emulated"] and saved["ap"] is not None and saved["reference"]["what"].endswith("TTA passes")
    per_scale = saved["tta"]["per_scale"]
    largest = max(per_scale, key=float)
    assert set(per_scale[largest]["inputs"]) == {"800x800"} and per_scale[largest]["tiles"] > 0


def test_tta_with_the_ray_engine_is_refused_before_any_work(data_root: Path, tmp_path: Path) -> None:
    result = invoke("run", "--target", "cpu", "--tta", "--engine", "ray", "--data", data_root, "--limit", 2,
                    "--out", tmp_path / "ray")
    assert result.exit_code != 0 and "--tta" in result.output and not (tmp_path / "ray").exists()
    bench = invoke("bench", "--target", "cpu", "--tta", "--engine", "ray", "--batch-sizes", 1, "--images", 2,
                   "--data", data_root, "--out", tmp_path / "ray-bench")
    assert bench.exit_code != 0 and "--tta" in bench.output and not (tmp_path / "ray-bench").exists()

"""WIDER FACE evaluation: hand-checkable cases, and agreement with the step-by-step protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.data.wider import SETTINGS, GroundTruth, ImageTruth, load_ground_truth
from toolkit.errors import InputError
from toolkit.evaluate.wider_ap import bbox_overlaps, evaluate, read_predictions
from wider_reference import naive_ap


def truth_of(boxes, keep) -> GroundTruth:
    return GroundTruth({"e/a": ImageTruth(np.array(boxes, float), {s: np.array(keep) for s in SETTINGS})}, "hand")


def test_perfect_predictions_give_ap_one() -> None:
    gt = truth_of([[10, 10, 20, 20], [50, 50, 30, 30]], [0, 1])
    preds = {"e/a": np.array([[10, 10, 20, 20, 0.9], [50, 50, 30, 30, 0.8]])}
    assert evaluate(preds, gt).settings["hard"].ap == pytest.approx(1.0)


def test_ignored_faces_are_neither_tp_nor_fp() -> None:
    gt = truth_of([[10, 10, 20, 20], [50, 50, 30, 30]], [0])  # face 1 is ignored in every setting
    preds = {"e/a": np.array([[50, 50, 30, 30, 0.95], [10, 10, 20, 20, 0.9]])}
    assert evaluate(preds, gt).settings["easy"].ap == pytest.approx(1.0)
    # A false positive at the top halves precision until the true face is found.
    preds = {"e/a": np.array([[200, 200, 30, 30, 0.95], [10, 10, 20, 20, 0.9]])}
    assert evaluate(preds, gt).settings["easy"].ap == pytest.approx(0.5)


def test_missed_face_halves_recall() -> None:
    gt = truth_of([[10, 10, 20, 20], [50, 50, 30, 30]], [0, 1])
    preds = {"e/a": np.array([[10, 10, 20, 20, 0.9], [300, 300, 10, 10, 0.1]])}
    assert evaluate(preds, gt).settings["medium"].ap == pytest.approx(0.5)


def test_iou_uses_the_plus_one_convention() -> None:
    a = np.array([[0.0, 0, 9, 9]])  # 10x10 pixels
    b = np.array([[5.0, 0, 14, 9]])  # overlaps 5 columns
    np.testing.assert_allclose(bbox_overlaps(a, b), [[50 / 150]])


def test_restricted_to_the_images_predicted() -> None:
    gt = truth_of([[10, 10, 20, 20], [50, 50, 30, 30]], [0, 1])
    gt.images["e/b"] = ImageTruth(np.array([[1.0, 1, 5, 5]]), {s: np.array([0]) for s in SETTINGS})
    result = evaluate({"e/a": np.array([[10, 10, 20, 20, 0.9], [50, 50, 30, 30, 0.8]])}, gt)
    assert result.restricted and result.images == 1 and result.settings["easy"].ap == pytest.approx(1.0)


def test_agrees_with_the_protocol_on_a_real_run(cpu_run: Path, data_root: Path) -> None:
    preds = read_predictions(cpu_run / "predictions")
    gt = load_ground_truth(data_root)
    ours = evaluate(preds, gt)
    truth = {k: (v.boxes, v.keep) for k, v in gt.images.items()}
    for s in SETTINGS:
        assert round(ours.settings[s].ap, 4) == round(naive_ap(preds, truth, s), 4)


def test_agrees_with_the_protocol_on_unsorted_noisy_predictions(data_root: Path) -> None:
    gt = load_ground_truth(data_root)
    rng = np.random.default_rng(7)
    preds = {}
    for key in list(gt.images)[:25]:
        boxes = gt.images[key].boxes
        jitter = boxes + rng.normal(0, 2, boxes.shape)
        noise = rng.uniform(0, 600, (5, 4)) * [1, 1, 0.1, 0.1]
        rows = np.vstack([jitter, noise])
        preds[key] = np.column_stack([rows, rng.uniform(0.05, 1, len(rows))])  # unsorted scores
    truth = {k: (v.boxes, v.keep) for k, v in gt.images.items()}
    ours = evaluate(preds, gt)
    for s in SETTINGS:
        assert round(ours.settings[s].ap, 4) == round(naive_ap(preds, truth, s), 4)


def test_txt_and_mat_ground_truth_agree(data_root: Path, tmp_path: Path) -> None:
    """The same boxes from wider_face_val_bbx_gt.txt as from the .mat files."""
    from toolkit.data.wider import _boxes_from_mat, _boxes_from_txt

    mat = _boxes_from_mat(data_root / "eval_tools/ground_truth/wider_face_val.mat")
    txt = _boxes_from_txt(data_root / "wider_face_split/wider_face_val_bbx_gt.txt")
    assert mat.keys() == txt.keys() and len(mat) == 3226
    differ = [k for k in mat if mat[k].shape != txt[k].shape or not np.allclose(mat[k], txt[k])]
    assert differ == ["39--Ice_Skating/39_Ice_Skating_iceskiing_39_583"]  # the known width 0 / -2 quirk


def test_evaluate_cli_writes_json(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ap.json"
    result = CliRunner().invoke(app, ["evaluate", str(cpu_run / "predictions"), "--gt", str(data_root),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    ap = json.loads(out.read_text())
    assert ap["images"] == 12 and set(SETTINGS) <= ap.keys()
    assert "restricted to the 12 images" in result.output
    run_ap = json.loads((cpu_run / "result.json").read_text())["ap"]
    assert all(abs(ap[s] - run_ap[s]) < 1e-9 for s in SETTINGS)


def test_bad_predictions_and_ground_truth(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "p" / "0--Parade").mkdir(parents=True)
    bad = tmp_path / "p" / "0--Parade" / "x.txt"
    bad.write_text("x\n2\n1 2 3 4 0.5\n")
    with pytest.raises(InputError, match="x.txt: the count line says 2 boxes, the file has 1"):
        read_predictions(tmp_path / "p")
    with pytest.raises(InputError, match="no such prediction folder"):
        read_predictions(tmp_path / "none")
    with pytest.raises(InputError, match="not a WIDER FACE root|missing wider_easy_val.mat"):
        load_ground_truth(tmp_path)

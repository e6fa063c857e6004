"""`evaluate`: WIDER FACE AP of any producer's prediction files, written as JSON when asked."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio
from toolkit.data.wider import load_ground_truth
from toolkit.evaluate.wider_ap import Evaluation, evaluate, read_predictions


def evaluate_folder(pred_dir: Path, gt_root: Path, json_path: Path | None) -> Evaluation:
    fileio.check_output_file(json_path)
    result = evaluate(read_predictions(pred_dir), load_ground_truth(gt_root))
    if json_path:
        fileio.publish({json_path: fileio.json_writer(result.summary())})
    return result

"""`detect`: faces on any images, into detections.json and pictures (the folder's earlier pictures go). It writes
a folder of its own (toolkit/ownership.py): new, empty, or one `detect` made; never one holding other files."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio, pipeline, runfolder
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw, save
from toolkit.model.signature import check_onnx_file
from toolkit.postprocess import Detections
from toolkit.progress import counter

RESULT = "detections.json"
PICTURES = "pictures"


def detect(files: list[Path], out_dir: Path, model: Path | None, pre: Preprocess, threshold: float,
           pictures: bool, progress=None) -> dict[str, Detections]:
    """Detections per image file (official weights, made dynamic, unless `model` names an ONNX)."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.model import official, weights

    if model is not None:
        check_onnx_file(model)
    found: dict[str, Detections] = {}
    source = model if model else official.dynamic_model_bytes(weights.fetch())
    with runfolder.transaction(out_dir, "detect", fresh=(PICTURES, RESULT), kind="detect") as staged:
        with OnnxRuntimeRunner(source) as runner:
            pipeline.run([(str(i), f) for i, f in enumerate(files)], runner, pre,
                         lambda key, det, _o: found.__setitem__(key, det), threshold=threshold,
                         on_progress=counter(progress, "detect", len(files)))
        by_file = {str(f): found[str(i)] for i, f in enumerate(files)}
        if pictures:
            for i, f in enumerate(files):
                save(staged / PICTURES / f"{i:04d}_{f.stem}.jpg", draw(read_rgb(f), found[str(i)]))
        fileio.write_json(staged / RESULT, {name: det.as_json() for name, det in by_file.items()})
    return by_file

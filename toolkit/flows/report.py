"""`report`: one table over every run folder's result.json, the published rows and the targets that
cannot run here, written as JSON, Markdown and PNG plots."""

from __future__ import annotations

from pathlib import Path

from toolkit import fileio, reading
from toolkit.data import wider
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError
from toolkit.report import outputs, plots
from toolkit.report.table import COLUMNS, load_runs, markdown, rows


def write_report(root: Path, tolerance: float, reference: str | None, json_path: Path | None,
                 markdown_path: Path | None) -> tuple[list[dict], list[Path]]:
    """The rows, and the files written together (JSON, Markdown, then the plots that had data): all of them
    replace the earlier report's, or none does."""
    json_path, markdown_path = json_path or root / "report.json", markdown_path or root / "report.md"
    fileio.check_output_file(json_path)
    fileio.check_output_file(markdown_path)
    results = load_runs(root)
    table = rows(results, tolerance, reference)
    files = {json_path: fileio.json_writer({"columns": list(COLUMNS), "tolerance": tolerance, "reference": reference,
                                            "rows": table}),
             markdown_path: lambda tmp: tmp.write_text(markdown(table), encoding="utf-8")}
    for name, writer in (("pr_curves.png", plots.pr_curves(root, results)), ("throughput.png", plots.throughput(table))):
        if writer is not None:
            files[root / name] = writer
    return table, fileio.publish(files)


def compare_runs(run_a: Path, run_b: Path, atol: float, rtol: float, json_path: Path | None) -> tuple[dict, tuple]:
    """The raw-output comparison of two runs, and the images only one of them saved (a's, b's)."""
    fileio.check_output_file(json_path)
    saved_a, saved_b = outputs.load(run_a), outputs.load(run_b)
    result = outputs.compare(saved_a, saved_b, atol, rtol)
    if json_path:
        fileio.publish({json_path: fileio.json_writer(result)})
    return result, outputs.unpaired(saved_a, saved_b)


LAYER_IMAGES = 4  # compare-outputs --layers: images the two models run (each tensor of a network is ~1 GB at 800x800)


def compare_layers(run_a: Path, run_b: Path, data: Path | None, count: int, json_path: Path | None) -> dict:
    """Each convolution's quantisation error: run_b's Q/DQ ONNX against run_a's float ONNX, tensor by tensor, on
    run_b's calibration images (else the dataset's first), at run_b's input; into `json_path` (default
    <run_b>/layers.json) and the plot beside it (error against FLOPs, the blocks named)."""
    from toolkit import sensitivity

    json_path = json_path or run_b / "layers.json"
    plot_path = json_path.with_suffix(".png")
    fileio.check_output_file(json_path)
    fileio.check_output_file(plot_path)
    float_model, qdq_model = _run_model(run_a, "onnx"), _run_model(run_b, "converted")
    result_b = reading.read_json(run_b / "result.json", {"preprocess": dict})
    saved = result_b["preprocess"]
    pre = Preprocess(saved.get("mode", "native"), saved.get("width"), saved.get("height"),
                     tuple(tuple(b) for b in saved.get("buckets", [])))
    paths = _layer_images(run_b, data, count)
    batches = [pre(read_rgb(p))[0][None] for p in paths]
    rows = sensitivity.per_convolution(float_model, qdq_model, batches)
    found = {"float_model": str(float_model), "qdq_model": str(qdq_model), "images": [str(p) for p in paths],
             "input": list(batches[0].shape[2:]), "preprocess": pre.describe(),
             "error": "signal-to-quantisation-noise ratio of each convolution's input in dB (higher is better): "
                      "local = before against after its own Q/DQ pair, vs_float = against the float model",
             "convolutions": rows}
    fileio.publish({json_path: fileio.json_writer(found), plot_path: plots.layer_errors(found)})
    return {**found, "written": [str(json_path), str(plot_path)]}


def _run_model(run: Path, key: str) -> Path:
    """A run folder's ONNX model named in its result.json artefacts (`onnx`: the float export, `converted`: what
    it deployed), checked to be a file."""
    reading.folder(run, "run folder", "give two run folders, e.g. runs/cpu runs/openvino-int8")
    artefacts = reading.read_json(run / "result.json", {"artefacts": dict})["artefacts"]
    name = artefacts.get(key)
    if not isinstance(name, str) or not name.endswith(".onnx"):
        raise InputError(f"{run}/result.json: its {'float' if key == 'onnx' else 'deployed'} model is not an ONNX "
                         f"file ({name!r}); --layers compares a float ONNX with a Q/DQ ONNX")
    path = run / name
    reading.regular_file(path, "ONNX model")
    return path


def _layer_images(run: Path, data: Path | None, count: int) -> list[Path]:
    """The run's calibration images (its calibration_report.json), else the dataset's first `count`."""
    report = run / "calibration_report.json"
    if report.is_file() and data is not None:
        names = reading.read_json(report, {"calibration_images": list})["calibration_images"]
        return [Path(n) if Path(n).is_absolute() else data / wider.IMAGES_DIR / n for n in names[:count]]
    if data is None:
        raise InputError("--layers needs images: no dataset given", "pass --data <WIDER root>")
    return [p for _, p in wider.list_val_images(data)[:count]]

"""`calibrate`: INT8 for a target by its backend's capability, refused before any work where it cannot
run. The sweep measures every configuration against FP32; a vendor quantiser runs as the chain runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit import backends, calibration, quantization, runfolder
from toolkit.chain import Stages, check_limit, export_model
from toolkit.data import wider
from toolkit.errors import InputError, Unavailable
from toolkit.target import Target


def calibrate_target(target: Target, data_root: Path | None, run_dir: Path, methods: list[str] | None,
                     count: int | None, limit: int | None, log: Callable[[str], None], progress=None,
                     search: bool = False) -> dict:
    """{"sweep": the calibration report}, {"quantiser": its summary, "artefact": the INT8 model}, or with `search`
    {"search": the float set search (toolkit/search.py)}."""
    if target.precision != "int8":
        raise InputError(f"target {target.name}: precision {target.precision}, calibration is for INT8 targets")
    backend = backends.get(target.backend)
    if not backend.int8:
        raise InputError(f"target {target.name}: backend {backend.name} has no INT8 quantisation")
    reason = backend.unavailable_for_int8()
    if reason and not (search and backend.emulation):  # a search goes through the device's emulation
        raise Unavailable(f"target {target.name}: {reason}")
    quantization.check_methods(backend, target, methods)
    check_limit(limit)
    if data_root is None or not data_root.is_dir():
        raise InputError(f"{data_root or 'no dataset'}: calibration needs the WIDER FACE images", "pass --data <WIDER root>")
    recipe = calibration.recipe_for(target, count)
    gt = wider.load_ground_truth(data_root)
    with runfolder.transaction(run_dir, f"calibrate --target {target.name}", reads=data_root) as staged:
        fp32 = export_model(target, staged, None, Stages(log), [])
        if search:
            from toolkit.search import search as float_set_search

            return {"search": float_set_search(target, fp32.onnx, data_root, gt, staged, log, progress, limit)}
        items = quantization.evaluation_items(recipe, data_root, limit)
        if backend.sweep_methods:
            return {"sweep": quantization.sweep(target, backend, fp32.onnx, data_root, gt, staged, items, log, progress,
                                                methods, count)}
        artefact, summary = quantization.quantise(target, backend, fp32.onnx, data_root, gt, staged, items, log, progress,
                                                  count)
        return {"quantiser": summary, "artefact": str(run_dir / artefact.relative_to(staged))}

"""Raw outputs saved by a run, and the comparison of two runs (after Polygraphy's Comparator). Arrays that are
not numbers, or empty, are refused naming them; a value that is not finite fails the comparison, saying where."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit import fileio, reading
from toolkit.errors import InputError

FILE = "outputs.npz"
SEP = "|"


def save(path: Path, outputs: dict[str, dict[str, np.ndarray]]) -> Path:
    """{image key: {output name: array}} -> one .npz (keys `<image>|<output>`)."""
    flat = {f"{key}{SEP}{name}": arr for key, outs in outputs.items() for name, arr in outs.items()}
    return fileio.write_with(path, lambda tmp: np.savez_compressed(tmp, **flat))


def load(path: Path) -> dict[str, np.ndarray]:
    """A run's saved outputs: `<image>|<output>` -> a non-empty numeric array."""
    if path.is_dir():
        path = path / FILE
    if not path.exists():
        raise InputError(f"{path}: no saved outputs", "runs save them as outputs.npz in the run folder")
    arrays = reading.npz(path, what="outputs file")
    for key, array in arrays.items():
        if SEP not in key:
            raise InputError(f"{path}: array {key!r} is not named <image>{SEP}<output>")
        if array.dtype.kind not in "biuf":
            raise InputError(f"{path}: {key} holds {array.dtype} values, not numbers")
        if array.size == 0:
            raise InputError(f"{path}: {key} is empty (shape {array.shape})")
    return arrays


def unpaired(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """The images whose outputs only the first, or only the second, run saved."""
    images_a, images_b = ({k.split(SEP, 1)[0] for k in x} for x in (a, b))
    return sorted(images_a - images_b), sorted(images_b - images_a)


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float, rtol: float) -> dict[str, dict]:
    """Per output name over the images both hold: largest differences, the minimum tolerance that
    would have passed, and whether |a - b| <= atol + rtol * |b| everywhere. A value that is not finite (NaN,
    infinity) in either run fails its output, and `non_finite` says where (the figures are over the rest)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise InputError("the two runs saved no outputs for the same images")
    result: dict[str, dict] = {}
    for key in common:
        name = key.split(SEP, 1)[1]
        x, y = a[key].astype(np.float64), b[key].astype(np.float64)
        if x.shape != y.shape:
            raise InputError(f"{key}: shapes differ ({x.shape} vs {y.shape})")
        r = result.setdefault(name, {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": [], "passed": True, "images": 0,
                                     "non_finite": []})
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.all():
            r["non_finite"].append(_where_not_finite(key, x, y))
            r["passed"] = False
            x, y = x[finite], y[finite]
            if x.size == 0:
                r["images"] += 1
                continue
        diff = np.abs(x - y)
        rel = diff / np.maximum(np.abs(y), np.finfo(np.float32).tiny)
        r["max_abs"] = max(r["max_abs"], float(diff.max()))
        r["max_rel"] = max(r["max_rel"], float(rel.max()))
        r["mean_abs"].append(float(diff.mean()))
        r["passed"] &= bool(np.all(diff <= atol + rtol * np.abs(y)))
        r["images"] += 1
    for r in result.values():
        r["mean_abs"] = float(np.mean(r["mean_abs"])) if r["mean_abs"] else 0.0
        r["min_atol"] = r["max_abs"]  # the atol that passes with rtol = 0
        r["min_rtol"] = r["max_rel"]  # the rtol that passes with atol = 0
    return result


def _where_not_finite(key: str, x: np.ndarray, y: np.ndarray) -> str:
    """`key`: which run holds how many values that are not finite, and the first of them."""
    said = []
    for run, values in (("the first run", x), ("the second run", y)):
        bad = ~np.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            said.append(f"{run}: {int(bad.sum())}, first at {list(first)} = {values[first]}")
    return f"{key} ({'; '.join(said)})"

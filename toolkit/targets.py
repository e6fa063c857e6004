"""Declarative targets: one TOML file per target under targets/ (adding a target = adding a file)."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit import backends, reading, schema
from toolkit.data.preprocess import Preprocess
from toolkit.data.tta import TtaPlan
from toolkit.errors import InputError
from toolkit.model.signature import OPSETS
from toolkit.paths import REPO_ROOT, TARGETS_DIR
from toolkit.target import Target

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
RUNS_IN = ("host", "container")
# What each key of a target file may hold; the backend's own table ([ascend], [tensorrt]) is the backend's to say.
TOP = {"name": schema.NAME, "description": schema.TEXT, "summary": schema.TEXT, "backend": schema.TEXT, "precision": schema.TEXT,
       "runs_in": schema.TEXT, "threshold": schema.UNIT, "export_shape": schema.TEXT, "export_opset": schema.whole(*OPSETS),
       "extends": schema.TEXT, "ap_reference": schema.FLAG, "published": schema.TEXT}
SECTIONS = {
    "input": {"preprocess": schema.TEXT, "size": schema.SIZE, "buckets": schema.SIZES, "batch_sizes": schema.BATCHES},
    "calibration": {"recipe": schema.TEXT, "methods": schema.TEXTS, "keep_float": schema.TEXT_LISTS,
                    "keep_fp16": schema.TEXTS, "skip_layers": schema.TEXTS, "equalise_depthwise": schema.FLAG},
    "tta": {"scales": schema.SCALES, "flip": schema.SCALES_OR_NONE, "merge": schema.TEXT, "iou": schema.UNIT,
            "max_side": schema.whole(32), "overlap": schema.whole(0), "upscaled_below": schema.POSITIVE,
            "downscaled_from": schema.NON_NEGATIVE, "upscale_where_below": schema.NON_NEGATIVE,
            "upscale_where_score": schema.UNIT},
    "container": {"dockerfile": schema.NAME, "base_image": schema.TEXT, "devices": schema.TEXT, "user": schema.TEXT,
                  "build_args": schema.TEXT_TABLE},
}


def available() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def _path(name_or_path: str, relative_to: Path = TARGETS_DIR) -> Path:
    path = Path(name_or_path)
    return path if path.suffix == ".toml" else relative_to / f"{name_or_path}.toml"


def within(path: Path, key: str, value: str) -> Path:
    """A file a target file names (`extends`, a calibration recipe), resolved from the target file's folder:
    it must lie in the repository or in that folder, or it is refused naming the key."""
    found = Path(os.path.realpath(path.parent / value))
    roots = [Path(os.path.realpath(r)) for r in (REPO_ROOT, path.parent)]
    if not any(found == r or r in found.parents for r in roots):
        raise InputError(f"{path}: {key} {value!r} lies outside the repository and this file's folder")
    return found


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's tables, over those of the file it `extends` (a target name or a .toml path)."""
    if path.resolve() in seen:
        raise InputError(f"{path}: extends itself (through {' -> '.join(p.name for p in seen)})")
    raw = reading.read_toml(path)
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str):
        raise InputError(f"{path}: extends must be a target name or a .toml file, not {base_name!r}")
    base_path = within(path, "extends", str(_path(base_name, path.parent)))
    if not base_path.is_file():
        raise InputError(f"{path}: extends {base_name!r}, but there is no {base_path}")
    merged = _read(base_path, (*seen, path.resolve()))
    merged.pop("name", None)  # a file is named by itself (or its file name), never by its base
    for key, value in raw.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _check_keys(path: Path, raw: dict) -> None:
    """Unknown keys, values of the wrong type or range, and values outside their allowed sets are refused
    naming the file and the key."""
    backend = raw.get("backend")
    if backend not in backends.names():
        raise InputError(f"{path}: backend {backend!r} is not one of {', '.join(backends.names())}")
    sections = {**SECTIONS, backend: backends.backend_class(backend).section_schema}
    for key, value in raw.items():
        if key in sections:
            if not isinstance(value, dict):
                raise InputError(f"{path}: {key!r} must be a table ([{key}])")
            schema.check_table(path, key, value, sections[key])
        else:
            schema.check_table(path, None, {key: value}, TOP)
    for key, allowed in (("precision", PRECISIONS), ("runs_in", RUNS_IN)):
        if key in raw and raw[key] not in allowed:
            raise InputError(f"{path}: {key} {raw[key]!r} is not one of {', '.join(allowed)}")


def load(name_or_path: str) -> Target:
    path = _path(name_or_path)
    if not path.is_file():
        raise InputError(f"target {name_or_path!r}: no {path}", f"known targets: {', '.join(available())}")
    raw = _read(path)
    if "backend" not in raw:
        raise InputError(f"{path}: missing key 'backend'")
    _check_keys(path, raw)
    inp = raw.pop("input", {})
    mode = inp.get("preprocess", "native")
    size = inp.get("size") if mode == "letterbox" else None  # a file extending a letterbox one may switch mode
    pre = Preprocess(mode, *(size or (None, None)),
                     buckets=tuple(tuple(b) for b in inp.get("buckets", [])) if mode == "buckets" else ())
    name = raw.pop("name", path.stem)
    schema.NAME.check(path, "name" if name != path.stem else "name (the file's own, as it has no name key)", name)
    recipe = (raw.get("calibration") or {}).get("recipe")
    if recipe is not None and recipe.endswith(".toml"):
        raw["calibration"]["recipe"] = str(within(path, "[calibration] recipe", recipe))
    elif recipe is not None:
        schema.NAME.check(path, "[calibration] recipe", recipe)
    return Target(
        name=name,
        backend=raw.pop("backend"),
        description=raw.pop("description", ""),
        summary=raw.pop("summary", ""),
        precision=raw.pop("precision", "fp32"),
        preprocess=pre,
        batch_sizes=tuple(inp.get("batch_sizes", [1])),
        runs_in=raw.pop("runs_in", "host"),
        threshold=float(raw.pop("threshold", 0.05)),
        export_shape=raw.pop("export_shape", "dynamic"),
        export_opset=raw.pop("export_opset", 17),
        ap_reference=bool(raw.pop("ap_reference", False)),
        published=raw.pop("published", None),
        tta_plan=_tta_plan(path, raw.pop("tta", {})),
        extra=raw,
    )


def _tta_plan(path: Path, table: dict) -> TtaPlan:
    try:
        return TtaPlan.of_table(table)
    except InputError as exc:
        raise InputError(f"{path} [tta]: {exc.message}") from None

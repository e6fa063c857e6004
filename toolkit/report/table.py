"""One comparison table over every run folder's result.json, plus the published references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit import reading
from toolkit.data.preprocess import describe_preprocess
from toolkit.data.wider import SETTINGS
from toolkit.errors import InputError
from toolkit.evaluate.deltas import ap_deltas, worst_drop
from toolkit.report.published import PUBLISHED
from toolkit.report.reference import NO_DELTAS, Reference

COLUMNS = ("source", "target", "precision", "preprocess", "tta", "batch", "status", "reason", "size_mb", "easy", "medium", "hard",
           "delta_easy", "delta_medium", "delta_hard", "delta_images", "delta_note", "e2e_images_per_s",
           "infer_images_per_s", "served_images_per_s", "tool_images_per_s", "tool", "p50_ms", "p99_ms", "devices",
           "device", "runs_in", "sdk")
# The report's blocks, one per kind of row (`source`), in the order the terminal and the plots show them; the
# targets that cannot run here are listed below them, one line per reason.
BLOCKS = {"measured": "measured here", "calibration": "INT8 calibration configurations (measured here)",
          "emulated": "EMULATED on this CPU: the device's numerics, never its speed",
          "simulated": "SIMULATED devices: host-side speed only, never an AP", "published": "published figures"}


def load_runs(runs: Path) -> list[dict]:
    """Every `<runs>/<name>/result.json`, with the folder it came from; hidden folders (a staging copy, a writer's
    leftovers) are no runs."""
    reading.folder(runs, "runs folder", "run `python -m toolkit run --target cpu` first")
    found = []
    for path in sorted(runs.glob("*/result.json")):
        if path.parent.name.startswith("."):
            continue
        result = reading.read_json(path)
        if not isinstance(result, dict) or not isinstance(result.get("target"), str) \
                or not isinstance(result.get("ap"), (dict, type(None))):
            raise InputError(f"{path}: not a result.json the toolkit writes (expected an object naming its target "
                             "and its AP)")
        result["_run"], result["_dir"] = path.parent.name, str(path.parent)
        found.append(result)
    if not found:
        raise InputError(f"{runs}: no */result.json", "run `python -m toolkit run --target cpu` first")
    return found


def reference_run(runs: list[dict], reference: str | None = None) -> Reference:
    """The run every accuracy delta is measured against: the run folder named `reference`, else the
    run of the target whose file says `ap_reference = true` (its own folder first, then a TTA one's)."""
    from toolkit import targets

    if reference is not None:
        chosen = next((r for r in runs if r["_run"] == reference), None)
        if chosen is None or not chosen.get("ap"):
            raise InputError(f"--reference {reference}: no run folder of that name with an AP",
                             f"runs: {', '.join(r['_run'] for r in runs)}")
        return Reference(chosen)
    marked = {name for name in targets.available() if targets.load(name).ap_reference}
    return Reference(next((r for r in sorted(runs, key=lambda r: r["_run"] != r.get("target"))
                           if r.get("target") in marked and r.get("ap") and not r.get("tta")), None))


def status(result: dict, deltas: dict, tolerance: float) -> tuple[str, str]:
    """passed only with an AP within `tolerance` of the reference (or none to compare with); a run with no AP
    (bench only, no ground truth) is not evaluated, never passed."""
    if result.get("status") == "unavailable":
        return "unavailable", result.get("reason", "")
    if result.get("error"):
        return "failed", result["error"]
    if not any(v is not None for v in (result.get("ap") or {}).values()):
        return "not-evaluated", _why_no_ap(result)
    worst = worst_drop(deltas)
    if worst is not None and worst > tolerance:
        return "ran-but-failed-accuracy", f"AP {worst:.2f} points below the reference (tolerance {tolerance})"
    return "passed", ""


def _why_no_ap(result: dict) -> str:
    missing = (result.get("evaluation") or {}).get("ap_missing")
    if isinstance(missing, str):
        return f"no AP: {missing}"
    if not result.get("artefacts"):
        return "no AP: only benchmarked (run --target gives the AP)"
    return "no AP: no ground truth for its images"


def _describe(pre: dict | None) -> str | None:
    return describe_preprocess(pre) if pre else None


def _preprocess(ap_pre: dict | None, speed_pre: dict | None) -> str | None:
    """One label when AP and speed were measured alike, both when they differ."""
    ap_label, speed_label = _describe(ap_pre), _describe(speed_pre)
    if speed_label is None or speed_label == ap_label or ap_label is None:
        return ap_label or speed_label
    return f"{ap_label} (AP) / {speed_label} (speed)"


def rows(runs: list[dict], tolerance: float = 1.0, reference: str | None = None) -> list[dict]:
    """Measured rows (one per benchmarked batch size), emulated rows, calibration rows, the targets that
    cannot run here, and the published rows: each a target file names right after that target's run. A
    result.json whose fields are not what the toolkit writes is named in one line."""
    ref = reference_run(runs, reference)
    beside = _published_beside(runs)
    out, shown = [], set()
    for r in runs:
        if r.get("simulation") or (r.get("bench") or {}).get("simulation"):
            continue  # simulated devices: their own block, after every measured and published row
        out += _of_run(_emulated_row, r, tolerance) if r.get("emulated") else \
            _of_run(_measured_rows, r, ref, tolerance) + _of_run(serving_rows, r)
        name = beside.get(r["_run"])
        if name and name not in shown:
            shown.add(name)
            out += [_published_row(p) for p in PUBLISHED if p["target"] == name]
    for r in runs:
        out += _of_run(calibration_rows, r, tolerance) + _of_run(onnx_twin_rows, r, ref, tolerance)
    out += unavailable_rows(runs)
    out += [_published_row(p) for p in PUBLISHED if p["target"] not in shown]
    for r in runs:
        out += _of_run(simulated_rows, r)
    return out


def _of_run(make: Callable[..., list[dict]], run: dict, *args) -> list[dict]:
    """`make(run, *args)`, the rows of one run; a field of another type or shape is one line naming its file."""
    try:
        return make(run, *args)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"{run.get('_dir', run['_run'])}/result.json: not a result.json the toolkit writes "
                         f"({type(exc).__name__}: {exc})") from None


def _device_count(stages: dict) -> int:
    """How many devices (chips, GPUs, CPU sessions) ran: the figures are theirs together (a card's)."""
    return len(stages.get("devices") or []) or 1


def simulated_rows(r: dict) -> list[dict]:
    """A simulated card's host-side figures: end to end against the simulated devices' rate and the
    host's capacity; never an AP (a simulated device returns reused outputs)."""
    bench = r.get("bench") or r
    simulation = bench.get("simulation") or r.get("simulation")
    if not simulation:
        return []
    cpu = (r.get("machine") or bench.get("machine") or {}).get("cpu")
    base = {**dict.fromkeys(COLUMNS), "source": "simulated", "target": r["_run"], "status": "simulated",
            "preprocess": _describe(bench.get("preprocess")), "devices": simulation["devices"],
            "device": f"SIMULATED {simulation['device']} x {simulation['devices']}, host {cpu}",
            "runs_in": (r.get("machine") or {}).get("runs_in"), "sdk": "simulation"}
    found = []
    for bs, stages in (bench.get("batch_sizes") or {}).items():
        capacity = (stages.get("capacity") or {}).get("throughput")
        reason = (f"host side only: e2e {stages['e2e_over_simulated']} of the simulated rate"
                  + (f"; host capacity {capacity} images/s" if capacity else ""))
        found.append({**base, "batch": int(bs), "reason": reason, "e2e_images_per_s": stages["e2e"]["throughput"],
                      "infer_images_per_s": stages.get("simulated_rate"), "tool": "simulated rate (published)"})
    if not found and r.get("throughput"):
        found.append({**base, "batch": r.get("batch_size"), "reason": "host side only",
                      "e2e_images_per_s": r["throughput"].get("images_per_s")})
    return found


def _published_beside(runs: list[dict]) -> dict[str, str]:
    """Run folder -> the published row its target file names (`published = "..."`)."""
    from toolkit import targets

    names = set(targets.available())
    return {r["_run"]: published for r in runs if r.get("target") in names
            and (published := targets.load(r["target"]).published)}


FLOAT_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}  # a runtime's type names, as target files say them


def precision_in_force(r: dict) -> str | None:
    """The precision the runtime reported it computes in (result.json `runtime`, from the run or its bench),
    else the target file's: INT8 with its float parts, such as int8/bf16."""
    runtime = r.get("runtime") or (r.get("bench") or {}).get("runtime") or {}
    floats = FLOAT_NAMES.get(runtime.get("precision_in_force"), runtime.get("precision_in_force"))
    if floats is None:
        return r.get("precision")
    return f"int8/{floats}" if r.get("precision") == "int8" else floats


def tta_label(r: dict) -> str | None:
    """A TTA run's passes in short: its scales' span, +f where some are mirrored (0.5-2x+f); None for a
    single-scale run (result.json's `tta` says the rest)."""
    tta = r.get("tta")
    if not tta:
        return None
    return f"{min(tta['scales']):g}-{max(tta['scales']):g}x" + ("+f" if tta["flip"] else "")


def _measured_rows(r: dict, ref: Reference, tolerance: float) -> list[dict]:
    ap = r.get("ap") or {}
    compared = ref.compare(r, ap)
    st, reason = status(r, compared.deltas, tolerance)
    base = {
        "source": "measured", "target": r["_run"], "precision": precision_in_force(r), "status": st,
        "reason": reason, "tta": tta_label(r),
        "size_mb": round(r["artefacts"]["converted_bytes"] / 2**20, 2) if r.get("artefacts") else None,
        **{s: ap.get(s) for s in SETTINGS}, **compared.deltas, "delta_images": compared.images,
        "delta_note": compared.note or None,
        "device": (r.get("machine") or {}).get("cpu"), "runs_in": (r.get("machine") or {}).get("runs_in"),
        "sdk": f"{r.get('backend')} {(r.get('versions') or {}).get('backend')}" if r.get("backend") else None,
        "tool_images_per_s": None, "tool": None,
    }
    bench = (r.get("bench") or {}).get("batch_sizes") or {}
    base["preprocess"] = _preprocess(r.get("preprocess"), (r.get("bench") or {}).get("preprocess"))
    mine = []
    if not bench:
        thr = r.get("throughput") or {}
        mine.append({**base, "batch": r.get("batch_size"), "e2e_images_per_s": thr.get("images_per_s"),
                     "infer_images_per_s": None, "p50_ms": None, "p99_ms": None, "devices": _device_count(thr)})
    for bs, stages in bench.items():
        mine.append({**base, "batch": int(bs), "e2e_images_per_s": stages["e2e"]["throughput"],
                     "infer_images_per_s": stages["infer"]["throughput"], "devices": _device_count(stages),
                     "p50_ms": stages["infer"]["p50_ms"], "p99_ms": stages["infer"]["p99_ms"]})
    return _with_tool_figures(mine, base, r.get("tool_throughput") or {})


def serving_rows(r: dict) -> list[dict]:
    """The service under load (`bench --serve`): its best concurrency level without a refusal (else the best),
    answers a second and p99 latency, beside the run's end-to-end rows."""
    serve = (r.get("bench") or {}).get("serve")
    if not serve or not serve.get("levels"):
        return []
    clean = [level for level in serve["levels"] if not level["errors"]]
    best = max(clean or serve["levels"], key=lambda level: level["throughput"])
    refused = sum(best["errors"].values())
    return [{**dict.fromkeys(COLUMNS), "source": "measured", "target": f"{r['_run']} [served, c{best['concurrency']}]",
             "precision": precision_in_force(r), "preprocess": _describe(r.get("preprocess")), "status": "served",
             "reason": f"concurrency {best['concurrency']} for {best['seconds']} s, {best['answered']} answered, "
                       f"{refused} refused", "served_images_per_s": best["throughput"], "p50_ms": best["p50_ms"],
             "p99_ms": best["p99_ms"], "device": (r.get("machine") or {}).get("cpu"), "runs_in": "service"}]


def _emulated_row(r: dict, tolerance: float) -> list[dict]:
    """The target's deployed numerics on this CPU: AP and its delta against CPU FP32 on the same images at
    the same input; never a throughput (the speed of an emulation is the CPU's, not the device's)."""
    emulation = r["emulation"]
    ap, same_input = r.get("ap") or {}, (r.get("reference") or {}).get("ap")
    deltas = ap_deltas(ap, same_input)
    worst = worst_drop(deltas)
    gate = ("" if worst is None else "AP at or above CPU FP32 at the same input" if worst <= 0 else
            f"AP {worst:.2f} points below CPU FP32 at the same input "
            f"({'beyond' if worst > tolerance else 'within'} tolerance {tolerance})")
    return [{**dict.fromkeys(COLUMNS), "source": "emulated", "target": r["_run"], "precision": r.get("precision"),
             "preprocess": _describe(r.get("preprocess")), "tta": tta_label(r), "batch": r.get("batch_size"),
             "status": "emulated",
             "reason": f"{emulation['numerics']}; {gate}".rstrip("; "), **{s: ap.get(s) for s in SETTINGS}, **deltas,
             "device": f"{emulation['device']}, emulated on {(r.get('machine') or {}).get('cpu')}",
             "runs_in": f"emulated ({emulation['runtime']})", "sdk": f"onnxruntime {(r.get('versions') or {}).get('onnxruntime')}"}]


def _published_row(p: dict) -> dict:
    """A published figure: its AP is over its own images (WIDER FACE val), so it has no delta against a run here."""
    ap = p.get("ap") or {}
    return {**dict.fromkeys(COLUMNS), "source": "published", "target": p["target"], "precision": p["precision"],
            "preprocess": p.get("preprocess"), "batch": p["batch"], "status": "published", "reason": "", "size_mb": None,
            **{s: ap.get(s) for s in SETTINGS}, **NO_DELTAS,
            "delta_note": "no Δ: published over its own images (WIDER FACE val)" if p.get("ap") else None,
            "e2e_images_per_s": p.get("e2e_images_per_s"),
            "infer_images_per_s": p["images_per_s"], "p50_ms": None, "p99_ms": None, "devices": p.get("chips"),
            "device": p["device"],
            "runs_in": None, "sdk": None, "tool_images_per_s": None, "tool": None}


def _with_tool_figures(mine: list[dict], base: dict, figures: dict) -> list[dict]:
    """The vendor tool's throughput (ais_bench / benchmark card figure, trtexec) on the row of the same
    batch size, or on a row of its own."""
    for bs, f in figures.items():
        row = next((m for m in mine if m["batch"] == int(bs)), None)
        if row is None:
            row = {**base, "batch": int(bs), "e2e_images_per_s": None, "infer_images_per_s": None,
                   "p50_ms": None, "p99_ms": None}
            mine.append(row)
        row["tool_images_per_s"] = f["images_per_s"]
        row["tool"] = f"{f['tool']}: {f['chip_images_per_s']} x {f['chips']} chips" if f["chips"] > 1 else f["tool"]
    return mine


def onnx_twin_rows(run: dict, ref: Reference, tolerance: float) -> list[dict]:
    """The vendor quantiser's ONNX twin (AMCT's fake-quant model) evaluated in ONNX Runtime on the run's images:
    INT8 accuracy known without the device."""
    calibrated = run.get("calibration") or {}
    ap = calibrated.get("onnx_twin_ap")
    if not ap:
        return []
    compared = ref.compare(run, ap)
    deltas = compared.deltas
    worst = worst_drop(deltas) or 0.0
    return [{**dict.fromkeys(COLUMNS), "source": "calibration",
             "target": f"{run['_run']} [{str(calibrated.get('method', 'int8')).upper()} fake-quant, onnxruntime]",
             "precision": "int8", "preprocess": _describe(run.get("preprocess")), "batch": 1,
             "status": "ran-but-failed-accuracy" if worst > tolerance else "passed",
             "reason": f"AP {worst:.2f} points below the reference" if worst > tolerance else "",
             **{s: ap[s] for s in SETTINGS}, **deltas, "delta_images": compared.images,
             "delta_note": compared.note or None, "sdk": "onnxruntime"}]


def unavailable_rows(runs: list[dict]) -> list[dict]:
    """A row for every target with no run here whose backend cannot run on this machine, saying why."""
    from toolkit import backends, targets

    seen = {r.get("target") for r in runs}
    found = []
    for name in targets.available():
        if name in seen:
            continue
        target = targets.load(name)
        reason = backends.get(target.backend).unavailable_for(target)
        if reason:
            found.append({**dict.fromkeys(COLUMNS), "source": "target", "target": name, "precision": target.precision,
                          "preprocess": target.preprocess.describe(), "status": "unavailable", "reason": reason})
    return found


def calibration_rows(run: dict, tolerance: float) -> list[dict]:
    """One row per configuration a calibration tried, its deltas against FP32 on the same images."""
    name = (run.get("calibration") or {}).get("report")
    folder = Path(run.get("_dir", "."))
    path = reading.inside(folder, name, folder / "result.json") if name else None  # relative to the run folder
    if path is None or not path.is_file():
        return []
    report = reading.read_json(path, {"rows": list, "recipe": dict})
    out = []
    for row in report["rows"][1:]:
        worst = worst_drop(row)
        failed = worst is not None and worst > tolerance
        out.append({
            "source": "calibration", "target": f"{run['_run']} [{row['config']}]", "precision": "int8",
            "preprocess": _describe(report["recipe"] and {"mode": report["recipe"]["preprocess"],
                                                          "width": (report["recipe"]["size"] or [None])[0],
                                                          "height": (report["recipe"]["size"] or [None, None])[1]}),
            "batch": 1, "status": "not-evaluated" if worst is None else "ran-but-failed-accuracy" if failed else "passed",
            "reason": "no AP: no face of any setting among its images" if worst is None else
            f"AP {worst:.2f} points below FP32 on the same images" if failed else "",
            "size_mb": row["size_mb"], **{s: row[s] for s in SETTINGS},
            **{f"delta_{s}": row[f"delta_{s}"] for s in SETTINGS}, "delta_images": report.get("evaluated_images"),
            "e2e_images_per_s": row["e2e_images_per_s"], "infer_images_per_s": row["infer_images_per_s"],
            "p50_ms": None, "p99_ms": None, "device": (run.get("machine") or {}).get("cpu"),
            "runs_in": (run.get("machine") or {}).get("runs_in"), "sdk": f"{run.get('backend')} {(run.get('versions') or {}).get('backend')}",
        })
    return out


def markdown(table: list[dict]) -> str:
    """Every column; AP with 4 decimals (the JSON keeps it whole)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table:
        lines.append("| " + " | ".join(_markdown_cell(row.get(c), c) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(value: object, column: str) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if column in SETTINGS and isinstance(value, float) else str(value)

"""Every target file in every mode it declares, on 4 real WIDER images: `--dry-run` always, `--mode emulate`
where its backend emulates a device, `--mode host` where the file says it runs on the host. (Its image's
own container mode needs the vendor's base image: the dry-run plans it.) An INT8 target calibrates on 4
of its recipe's images here (its recipe otherwise as the file says), so the whole matrix stays minutes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cli import invoke, run_cli
from toolkit import backends, targets
from toolkit.paths import REPO_ROOT
from toolkit.report.table import COLUMNS

MODES = [(name, mode) for name in targets.available() for mode in (
    "dry-run", *(["emulate"] if backends.get(targets.load(name).backend).emulation is not None else []),
    *(["host"] if targets.load(name).runs_in == "host" else []))]


def small_calibration(name: str, folder: Path) -> str:
    """The target file itself, or (INT8) a file of the same name extending it with 4 calibration images."""
    target = targets.load(name)
    recipe = target.extra.get("calibration", {}).get("recipe")
    if target.precision != "int8" or recipe is None:
        return name
    text = (REPO_ROOT / "calibration" / f"{recipe}.toml").read_text()
    small = folder / f"{recipe}-small.toml"
    small.write_text("\n".join("count = 4" if line.startswith("count") else
                               "batch_size = 2" if line.startswith("batch_size") and "= 1" not in line else line
                               for line in text.splitlines()) + "\n")
    derived = folder / f"{name}.toml"
    derived.write_text(f'extends = "{REPO_ROOT / "targets" / f"{name}.toml"}"\n[calibration]\nrecipe = "{small}"\n')
    return str(derived)


@pytest.fixture(scope="module")
def matrix_runs(tmp_path_factory) -> Path:
    """The matrix's run folders (their JSON and curves), gathered for the report over all of them."""
    return tmp_path_factory.mktemp("matrix") / "runs"


def keep_for_report(out: Path, runs: Path, name: str, mode: str) -> None:
    folder = runs / (name if mode == "host" else f"{name}-{mode}")
    for path in [*out.glob("*.json"), *out.glob("*.npz")]:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)


@pytest.mark.slow
@pytest.mark.parametrize("name, mode", MODES, ids=[f"{n}-{m}" for n, m in MODES])
def test_every_target_in_every_mode_it_declares(name: str, mode: str, data_root: Path, tmp_path: Path,
                                                matrix_runs: Path) -> None:
    target = small_calibration(name, tmp_path)
    out = tmp_path / name
    flags = ["--dry-run"] if mode == "dry-run" else ["--mode", mode]
    result = invoke("run", "--target", target, *flags, "--data", data_root, "--limit", 4, "--out", out)
    assert result.exit_code == 0, result.output
    if mode == "dry-run":
        assert (out / "plan.json").is_file()
        return
    saved = json.loads((out / "result.json").read_text())
    assert saved["target"] == name and saved["images"] >= 1
    keep_for_report(out, matrix_runs, name, mode)
    import onnx

    exported = onnx.load(str(out / "centerface.onnx"))  # at the opset the target file asks (Ascend: AMCT's)
    assert next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")) == targets.load(name).export_opset
    if "simulation" in saved:
        assert saved["ap"] is None  # a simulated device never claims an AP
    else:
        assert saved["ap"]["easy"] is not None and saved.get("emulated", False) == (mode == "emulate")


@pytest.mark.slow
def test_the_report_over_every_kind_of_run_fits_100_columns(matrix_runs: Path, data_root: Path) -> None:
    """Measured, emulated, simulated and published rows, and the targets that cannot run here, at 100 columns
    (the matrix's runs; run alone, three of them are made here)."""
    if not matrix_runs.is_dir():
        for name, mode in (("cpu", "host"), ("t4", "emulate"), ("sim-310", "host")):
            out = matrix_runs.parent / "made" / name
            result = invoke("run", "--target", name, "--mode", mode, "--data", data_root, "--limit", 4, "--out", out)
            assert result.exit_code == 0, result.output
            keep_for_report(out, matrix_runs, name, mode)
    code, out, err = run_cli("report", "--runs", matrix_runs, env={"COLUMNS": "100"})
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    for block in ("measured here", "EMULATED on this CPU", "SIMULATED devices", "published figures"):
        assert any(line.startswith(block) for line in lines), block
    rows = json.loads((matrix_runs / "report.json").read_text())["rows"]
    cpu = next(r for r in rows if r["source"] == "measured" and r["target"] == "cpu")
    assert f"{cpu['easy']:.4f}" in out and f"{cpu['hard']:.4f}" in out  # each AP whole, 4 decimals
    assert not re.search(r"\b0\.\d{5,}", out)  # never more
    for row in (r for r in rows if r["status"] == "unavailable"):
        assert sum(line.startswith(f"{row['target']}: unavailable: ") for line in lines) == 1
    header = (matrix_runs / "report.md").read_text().splitlines()[0]
    assert header == "| " + " | ".join(COLUMNS) + " |"  # Markdown keeps every column
    wide_code, wide, _ = run_cli("report", "--runs", matrix_runs, "--wide", env={"COLUMNS": "200"})
    assert wide_code == 0 and "runs in" in wide and "runs in" not in out


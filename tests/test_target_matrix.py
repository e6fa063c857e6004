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
from terminal import WIDTHS, check_screen, screen, toolkit
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
@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_over_every_kind_of_run_fits_the_terminal(width: int, matrix_runs: Path, data_root: Path,
                                                              tmp_path: Path) -> None:
    """Measured, emulated, simulated and published rows, and the targets that cannot run here, in a real terminal
    of each width (the matrix's runs; run alone, three of them are made here): nothing cut or broken, every
    target name whole, each AP whole at 4 decimals, every reason whole."""
    if not (matrix_runs / "report.json").is_file():
        for name, mode in (("cpu", "host"), ("t4", "emulate"), ("sim-310", "host")):
            if not any(matrix_runs.glob(f"{name}*/result.json")):
                out = matrix_runs.parent / "made" / name
                result = invoke("run", "--target", name, "--mode", mode, "--data", data_root, "--limit", 4, "--out", out)
                assert result.exit_code == 0, result.output
                keep_for_report(out, matrix_runs, name, mode)
    shown = screen(toolkit("report", "--runs", matrix_runs), width, tmp_path)
    rows = json.loads((matrix_runs / "report.json").read_text())["rows"]
    cpu = next(r for r in rows if r["source"] == "measured" and r["target"] == "cpu")
    figures = [f"{cpu[s]:.4f}" for s in ("easy", "medium", "hard")]
    check_screen(shown, width, [r["target"] for r in rows if r["status"] != "unavailable"] + figures, "report")
    lines = shown.splitlines()
    for block in ("measured here", "EMULATED on this CPU", "SIMULATED devices", "published figures"):
        assert any(line.startswith(block) for line in lines), block
    assert not re.search(r"\b0\.\d{5,}", shown)  # never more than 4 decimals
    joined = " ".join(shown.split())
    for row in (r for r in rows if r["status"] == "unavailable"):  # named once, its reason whole (wrapped at words)
        names = rf"(?:^| )(?:[\w-]+, )*{re.escape(row['target'])}(?:, [\w-]+)*: cannot run here: "
        assert len(re.findall(names, joined)) == 1, row["target"]
        assert " ".join(row["reason"].split()) in joined
    header = (matrix_runs / "report.md").read_text().splitlines()[0]
    assert header == "| " + " | ".join(COLUMNS) + " |"  # Markdown keeps every column
    if width == 120:
        from toolkit.report.plots import bar_groups
        from toolkit.report.table import BLOCKS

        kinds = [kind for kind, _ in bar_groups(rows)]  # every bar a row on the screen, in the screen's blocks
        assert kinds == [k for k in BLOCKS if k in kinds]
        for kind, bars in bar_groups(rows):
            assert any(line.startswith(BLOCKS[kind]) for line in lines)
            assert all(label.split(" bs")[0] in shown for label, _, _ in bars)
        wide_code, wide, _ = run_cli("report", "--runs", matrix_runs, "--wide", env={"COLUMNS": "200"})
        assert wide_code == 0 and "runs in" in wide and "runs in" not in shown

"""Every target file in every mode it declares, on 4 real WIDER images: `--dry-run` always, `--mode emulate`
where its backend emulates a device, `--mode host` where the file says it runs on the host. (Its image's
own container mode needs the vendor's base image: the dry-run plans it.) An INT8 target calibrates on 4
of its recipe's images here (its recipe otherwise as the file says), so the whole matrix stays minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import invoke
from toolkit import backends, targets
from toolkit.paths import REPO_ROOT

MODES = [(name, mode) for name in targets.available() for mode in (
    "dry-run", *(["emulate"] if backends.get(targets.load(name).backend).can_emulate else []),
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


@pytest.mark.slow
@pytest.mark.parametrize("name, mode", MODES, ids=[f"{n}-{m}" for n, m in MODES])
def test_every_target_in_every_mode_it_declares(name: str, mode: str, data_root: Path, tmp_path: Path) -> None:
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
    import onnx

    exported = onnx.load(str(out / "centerface.onnx"))  # at the opset the target file asks (Ascend: AMCT's)
    assert next(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")) == targets.load(name).export_opset
    if "simulation" in saved:
        assert saved["ap"] is None  # a simulated device never claims an AP
    else:
        assert saved["ap"]["easy"] is not None and saved.get("emulated", False) == (mode == "emulate")

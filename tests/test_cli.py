"""The CLI through typer's CliRunner: the chain, detect, doctor, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import invoke



def test_every_command_explains_itself() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("fetch-weights", "port", "export", "parity", "detect", "convert", "run", "evaluate", "doctor"):
        assert command in result.output
        sub = invoke(command, "--help")
        assert sub.exit_code == 0 and "Usage" in sub.output


def test_run_writes_result_json(cpu_run: Path) -> None:
    result = json.loads((cpu_run / "result.json").read_text())
    assert result["target"] == "cpu" and result["images"] == 12
    assert result["preprocess"]["mode"] == "native"
    assert set(result["ap"]) == {"easy", "medium", "hard"} and all(0 < v <= 1 for v in result["ap"].values())
    assert result["evaluation"]["restricted"] is True
    assert result["parity"]["pytorch_vs_official"]["heatmap"] <= 1e-4
    assert result["versions"]["onnxruntime"] and result["machine"]["cpu_count"]
    assert {"weights", "export ONNX + onnxsim", "inference", "evaluate"} <= result["timings_s"].keys()
    assert len(list((cpu_run / "predictions").glob("*/*.txt"))) == 12
    pictures = result["artefacts"]["pictures"]  # relative to the run folder
    assert len(pictures) == 4 and all((cpu_run / p).is_file() for p in pictures)
    assert (cpu_run / result["artefacts"]["onnx"]).is_file() and (cpu_run / result["artefacts"]["converted"]).is_file()
    hidden = sorted(p.relative_to(cpu_run) for p in cpu_run.rglob(".*") if p.is_file())
    assert hidden == [Path(".centerface-toolkit.json"), Path(".lock")]  # what the toolkit made, and its lock
    assert (cpu_run / ".lock").read_bytes() == b""  # at rest
    made = json.loads((cpu_run / ".centerface-toolkit.json").read_text())
    assert made["kind"] == "run" and set(made["entries"]) == {p.name for p in cpu_run.iterdir()} - {".lock", ".centerface-toolkit.json"}


def test_run_without_a_dataset_detects_on_the_sample(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CENTERFACE_DATA", str(tmp_path / "no-such-dataset"))
    result = invoke("run", "--target", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "no WIDER FACE dataset" in result.output
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["ap"] is None
    (faces,) = saved["detections"].values()
    assert len([f for f in faces if f["score"] >= 0.5]) == 1  # Grace Hopper's portrait: one face


def test_detect_writes_json_and_pictures(wider_images, cpu_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for p in wider_images[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    result = invoke("detect", folder, "--model", cpu_run / "centerface.onnx", "--out", tmp_path / "out", "--preprocess", "letterbox",
                    "--size", "800x800")
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    assert len(found) == 3 and sum(len(v) for v in found.values()) > 0
    first = next(d for v in found.values() for d in v)
    assert {"x1", "y1", "x2", "y2"} <= set(first) and len(first["landmarks"]) == 5 and first["score"] >= 0.5
    assert len(list((tmp_path / "out" / "pictures").glob("*.jpg"))) == 3


def test_detect_on_a_broken_image_is_one_line(wider_images, tmp_path: Path) -> None:
    bad = tmp_path / "half.jpg"
    bad.write_bytes(wider_images[0].read_bytes()[:5000])
    result = invoke("detect", bad, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "half.jpg: truncated JPEG" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "detections.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--target", "nope"], "target 'nope'"),
        (["run", "--data", "/no/such/dir"], "/no/such/dir: no such dataset folder"),
        (["evaluate", "/no/preds", "--gt", "/tmp"], "/no/preds: no such prediction folder"),
        (["export", "--pth", "/no/model.pth"], "/no/model.pth: no such file"),
        (["export", "--shape", "1x3x100x100"], "multiples of 32"),
        (["detect", "/no/images"], "/no/images: no such file or folder"),
        (["run", "--preprocess", "letterbox", "--size", "801x800"], "multiples of 32"),
        (["run", "--batch-size", "0"], "batch size 0: must be 1 or more"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_parts_split_the_data_set(data_root: Path) -> None:
    from toolkit.chain import dataset_items

    whole = dataset_items(data_root, None)
    first, second = (dataset_items(data_root, None, (k, 2)) for k in (1, 2))
    assert len(first) + len(second) == len(whole) and not set(first) & set(second)
    assert first[:2] == whole[0:3:2] and dataset_items(data_root, 5, (2, 2)) == second[:5]


def test_doctor_reports_this_machine() -> None:
    result = invoke("doctor")
    assert result.exit_code == 0
    for check in ("onnxruntime", "docker", "GPU", "CANN set_env.sh", "tool: atc", "tool: trtexec"):
        assert check in result.output


def test_rerun_replaces_an_earlier_runs_predictions(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    result = invoke("run", "--target", "cpu", "--data", data_root, "--limit", 3, "--out", run)
    assert result.exit_code == 0, result.output
    assert len(list((run / "predictions").glob("*/*.txt"))) == 3
    assert json.loads((run / "result.json").read_text())["evaluation"]["images"] == 3


def test_stages_run_apart_give_the_same_result(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """export, then convert + infer on the same run folder (as host and container split them)."""
    out = tmp_path / "cpu"
    missing = invoke("run", "--target", "cpu", "--stages", "infer", "--data", data_root, "--limit", 12, "--out", out)
    assert missing.exit_code == 2 and "no stages.json" in missing.output
    first = invoke("run", "--target", "cpu", "--stages", "export", "--data", data_root, "--limit", 12, "--out", out)
    assert first.exit_code == 0, first.output
    assert (out / "centerface.onnx").is_file() and not (out / "result.json").exists()
    rest = invoke("run", "--target", "cpu", "--stages", "convert,infer", "--data", data_root, "--limit", 12, "--out", out)
    assert rest.exit_code == 0, rest.output
    apart, whole = (json.loads((p / "result.json").read_text()) for p in (out, cpu_run))
    assert apart["ap"] == whole["ap"] and apart["parity"] == whole["parity"]
    assert {"export ONNX + onnxsim", "convert (onnxruntime)", "inference"} <= apart["timings_s"].keys()
    bad = invoke("run", "--target", "cpu", "--stages", "export,deploy", "--out", out)
    assert bad.exit_code == 2 and "stage 'deploy'" in bad.output


@pytest.mark.parametrize("target, mode, inside", [("cpu", "", False), ("cpu", "MODE=container", True),
                                                  ("310p", "", True), ("t4", "MODE=host", False)])
def test_make_runs_container_targets_in_their_image(target: str, mode: str, inside: bool) -> None:
    import subprocess

    from toolkit.paths import REPO_ROOT

    plan = subprocess.run(["make", "-n", f"target={target}", *([mode] if mode else [])], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert (f"-m toolkit build --target {target}" in plan) == inside
    assert f"-m toolkit run --target {target} --mode {'container' if inside else 'host'}" in plan

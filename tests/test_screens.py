"""Every screen readable at 60, 80, 100 and 120 columns, as a person sees it in a real terminal (tests/terminal.py):
no line wider than the terminal, nothing cut, no identifier or figure broken. The report's screen is tested over
every kind of row in tests/test_target_matrix.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from terminal import WIDTHS, check_screen, every_help, screen, toolkit
from toolkit import targets


@pytest.mark.parametrize("width", WIDTHS)
def test_targets_and_doctor_tell_targets_apart_and_say_what_runs_here(width: int, tmp_path: Path) -> None:
    names = targets.available()
    summaries = [targets.load(n).summary for n in names]
    assert all(summaries) and len(set(summaries)) == len(names)  # a few words each, no two alike
    shown = screen(toolkit("targets"), width, tmp_path)
    check_screen(shown, width, [*names, *summaries, "make target=cpu", "python -m toolkit doctor"], "targets")
    assert any(line.strip().endswith("--mode emulate") for line in shown.splitlines())  # the command, whole
    doctor = screen(toolkit("doctor"), width, tmp_path)
    check_screen(doctor, width, [f"target: {n}" for n in names] + ["/usr/local/Ascend/ascend-toolkit/set_env.sh"],
                 "doctor")
    assert "--mode emulate" in doctor


@pytest.mark.parametrize("width", WIDTHS)
def test_every_help_lists_each_option_whole(width: int, tmp_path: Path) -> None:
    import typer

    from toolkit.cli.app import SHORT, app

    shown = screen(every_help(), width, tmp_path)
    commands = typer.main.get_command(app).commands
    options = sorted({opt for c in commands.values() for p in c.params for opt in p.opts if opt.startswith("--")})
    check_screen(shown, width, options + [f"Usage: python -m toolkit {name}" for name in commands], "--help")
    joined = " ".join(shown.split())
    for text in SHORT.values():  # each command's line in the list, whole (wrapped at words)
        assert text in joined
    modes = [line for line in shown.splitlines() if line.lstrip().startswith("--mode ")]
    assert modes and "emulate" in joined and "<list[" not in "".join(line for line in shown.splitlines()
                                                                      if line.startswith("Usage:"))


@pytest.fixture(scope="module")
def benched(cpu_run: Path, data_root: Path, tmp_path_factory) -> Path:
    return Path(shutil.copytree(cpu_run, tmp_path_factory.mktemp("bench") / "cpu"))


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_shows_every_figure_whole(width: int, benched: Path, data_root: Path, tmp_path: Path) -> None:
    shown = screen(toolkit("bench", "--target", "cpu", "--out", benched, "--data", data_root, "--batch-sizes", 1,
                           "--images", 2, "--warmup", 1, "--iters", 2, "--json", tmp_path / "b.json"), width, tmp_path)
    stages = json.loads((tmp_path / "b.json").read_text())["batch_sizes"]["1"]
    figures = [str(stages[s]["throughput"]) for s in ("read", "preprocess", "infer", "postprocess", "e2e")]
    check_screen(shown, width, figures + ["e2e / infer"], "bench")

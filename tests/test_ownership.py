"""Nothing of the user's is ever lost or touched (issue 30): one ownership rule for every command that writes,
links replaced and never written through, containers that get only what they need. Real processes, real
links, a real Docker engine where one runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from cli import run_cli
from test_bad_input import first_images, wider_root
from test_run_folder import copy_run, leftovers, tree_state


def test_detect_out_dot_in_a_folder_of_photos_refuses_and_keeps_every_byte(data_root: Path, tmp_path: Path,
                                                                            catalogue: list) -> None:
    photos = tmp_path / "photos"
    (photos / "pictures").mkdir(parents=True)
    for name, data in zip(("family.jpg", "holiday.jpg"), first_images(data_root, 2).values()):
        (photos / name).write_bytes(data)
        (photos / "pictures" / name).write_bytes(data)
    (photos / "notes.txt").write_text("the user's notes")
    before = tree_state(photos)
    code, _, err = run_cli("detect", "pictures", "--out", ".", cwd=photos)
    catalogue.append(("detect --out . in a folder of photos", "cd photos; python -m toolkit detect pictures --out .",
                      code, err.strip().splitlines()[-1].replace(str(tmp_path), "<tmp>")))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds 4 entries the toolkit did not make (family.jpg, holiday.jpg, notes.txt and 1 more)" in err
    assert tree_state(photos) == before  # every byte, and no lock file either
    code, _, err = run_cli("detect", "pictures", "--out", "found", cwd=photos)  # a new folder of its own: used
    assert code == 0, err
    code, _, err = run_cli("detect", "pictures/family.jpg", "--out", "found", cwd=photos)  # the one it made: reused
    assert code == 0 and len(json.loads((photos / "found" / "detections.json").read_text())["images"]) == 1, err


def test_a_run_never_writes_through_links_in_its_folder(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """predictions/ and .lock replaced by links to the user's files: a re-run that fails half-way and one that
    succeeds both leave those files as they were, and the successful one replaces the links."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("the user's")
    (elsewhere / "lock-like").write_text("a file the user keeps")
    before = tree_state(elsewhere)
    run = copy_run(cpu_run, tmp_path / "cpu")
    shutil.rmtree(run / "predictions")
    (run / ".lock").unlink()
    (run / "predictions").symlink_to(elsewhere)
    (run / ".lock").symlink_to(elsewhere / "lock-like")
    images = first_images(data_root, 5)
    bad = list(images)[3]
    images[bad] = images[bad][: len(images[bad]) // 2]  # the run fails here, after writing predictions
    code, _, err = run_cli("run", "--data", wider_root(tmp_path / "root", data_root, images), "--out", run)
    assert code == 2 and "truncated JPEG" in err and "kept as it was" in err, err
    assert tree_state(elsewhere) == before and (run / "predictions").is_symlink()
    code, _, err = run_cli("run", "--data", data_root, "--limit", 3, "--out", run)
    assert code == 0, err
    assert tree_state(elsewhere) == before and not leftovers(tmp_path)
    assert not (run / "predictions").is_symlink() and len(list((run / "predictions").glob("*/*.txt"))) == 3
    assert not (run / ".lock").is_symlink()


def test_output_files_replace_only_what_the_toolkit_wrote(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    mine = tmp_path / "eval.json"
    mine.write_text("the user's own JSON")
    code, _, err = run_cli("evaluate", cpu_run / "predictions", "--gt", data_root, "--json", mine)
    assert code == 2 and f"{mine}: exists and the toolkit did not write it" in err and mine.read_text() == "the user's own JSON"
    written = tmp_path / "ours.json"
    for _ in range(2):  # written, then replaced: the folder's record names it
        code, _, err = run_cli("evaluate", cpu_run / "predictions", "--gt", data_root, "--json", written)
        assert code == 0, err
    assert "ours.json" in json.loads((tmp_path / ".centerface-toolkit.json").read_text())["entries"]
    runs = tmp_path / "runs"
    copy_run(cpu_run, runs / "cpu")
    (runs / "report.md").write_text("the user's notes on the runs")
    code, _, err = run_cli("report", "--runs", runs)
    assert code == 2 and "report.md: exists and the toolkit did not write it" in err
    assert not (runs / "report.json").exists()  # all of the report, or none of it


def test_a_writable_folder_with_a_read_only_parent_names_the_parent(cpu_run: Path, tmp_path: Path) -> None:
    """A folder the user may write, in a parent they may not: the message names the parent. Run as root without
    its power to override permissions (setpriv), so the file modes apply."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv, to run the command without root's override of file modes")
    parent = tmp_path / "parent"
    run = copy_run(cpu_run, parent / "cpu")
    before = tree_state(run)
    parent.chmod(0o555)
    try:
        code, _, err = run_cli("run", "--stages", "infer", "--limit", 2, "--out", run,
                               wrap=["setpriv", "--bounding-set", "-dac_override,-dac_read_search"])
    finally:
        parent.chmod(0o755)
    assert code == 2 and f"{parent}: cannot make the staging copy of cpu in it (Permission denied)" in err, err
    assert tree_state(run) == before


def test_the_container_line_mounts_exactly_the_run_folder_the_data_and_the_cache(data_root: Path, tmp_path: Path,
                                                                                 catalogue: list) -> None:
    from toolkit.paths import cache_dir

    for target in ("310p", "t4", "cpu"):
        out = tmp_path / f"my-{target}"
        code, stdout, err = run_cli("run", "--target", target, "--mode", "container", "--dry-run", "--data", data_root,
                                    "--out", out)
        assert code == 0, err
        line = shlex.split(next(line for line in stdout.splitlines() if line.startswith("docker run")))
        mounts = [line[i + 1] for i, part in enumerate(line) if part == "-v"]
        ours = {f"{out}:/runs/{out.name}", f"{cache_dir()}:/cache", f"{data_root}:/data:ro"}
        assert ours <= set(mounts) and all(m in ours or m.split(":")[0].startswith(("/usr/local/", "/etc/ascend"))
                                           and m.endswith(":ro") for m in mounts), mounts
        assert line[line.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
        if target == "t4":
            assert line[line.index("--gpus") + 1] == "device=0"  # the one GPU its file names
        if target == "310p":
            catalogue.append(("container mounts", f"python -m toolkit run --target 310p --dry-run --out <tmp>/{out.name}",
                              code, " ".join(m.replace(str(tmp_path), "<tmp>") for m in mounts[:3])))
            plan = json.loads((out / "plan.json").read_text())
            assert "driver's nodes" in plan["container_user"] and "--group-add" in line

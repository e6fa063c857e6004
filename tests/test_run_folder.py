"""Run folders as transactions, tested as a user meets them: real processes, real signals, real files.

A command's output appears whole or not at all; a second writer is turned away naming the first; a
re-run interrupted at any moment leaves the earlier complete run byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli import run_cli, spawn
from toolkit import fileio, runfolder
from toolkit.errors import InputError


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Hidden staging or parked folders beside run folders."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and ("staging" in p.name or ".old-" in p.name))


def copy_run(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


def evaluated(folder: Path, data_root: Path) -> dict:
    """`evaluate <folder>/predictions` as a user runs it, from its JSON."""
    code, _, err = run_cli("evaluate", folder / "predictions", "--gt", data_root, "--json", folder.parent / "eval.json")
    assert code == 0, err
    return json.loads((folder.parent / "eval.json").read_text())


# --- the transaction itself -------------------------------------------------------------------------

def made(folder: Path, files: dict[str, str], kind: str = "run") -> Path:
    """A folder the toolkit made: `files` written by a transaction."""
    with runfolder.transaction(folder, "setup", kind=kind) as staged:
        for name, text in files.items():
            fileio.write_text(staged / name, text)
    return folder


def test_a_transaction_swaps_in_whole_or_not_at_all(tmp_path: Path) -> None:
    folder = made(tmp_path / "run", {"kept.txt": "earlier"})
    with runfolder.transaction(folder, "test") as staged:
        assert staged != folder and (staged / "kept.txt").read_text() == "earlier"
        (staged / "new.txt").write_text("new")
        assert not (folder / "new.txt").exists()  # nothing shows before success
    assert (folder / "new.txt").read_text() == "new" and (folder / "kept.txt").read_text() == "earlier"
    before = snapshot(folder)
    with pytest.raises(RuntimeError), runfolder.transaction(folder, "test") as staged:
        fileio.write_text(staged / "new.txt", "half")  # every writer replaces files (fileio), never edits a link
        (staged / "kept.txt").unlink()
        raise RuntimeError("fails half-way")
    assert snapshot(folder) == before and not leftovers(tmp_path)
    assert runfolder.last_outcome() == f"{folder} kept as it was"


def test_fresh_entries_start_empty_and_links_never_touch_the_kept_state(tmp_path: Path) -> None:
    folder = made(tmp_path / "detect", {"pictures/old.jpg": "old", "notes.txt": "v1"}, kind="detect")
    with runfolder.transaction(folder, "test", fresh=("pictures",), kind="detect") as staged:
        assert not (staged / "pictures").exists()
        assert os.stat(staged / "notes.txt").st_ino == os.stat(folder / "notes.txt").st_ino  # a hard link
        fileio.write_text(staged / "notes.txt", "v2")  # writers replace files, so the kept one stays
        assert (folder / "notes.txt").read_text() == "v1"
    assert not (folder / "pictures").exists() and (folder / "notes.txt").read_text() == "v2"


def test_a_failed_first_run_leaves_no_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "run"
    with pytest.raises(KeyboardInterrupt), runfolder.transaction(folder, "test") as staged:
        (staged / "x").write_text("x")
        raise KeyboardInterrupt
    assert not folder.exists() and runfolder.last_outcome() == f"{folder} not created"


def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from toolkit import runfolder\n"
         "with runfolder.transaction(Path(sys.argv[1]), 'holder'):\n    print('held', flush=True); time.sleep(60)",
         str(folder)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match=rf"{folder}: busy: .*pid {holder.pid}, started .*holder"):
        with runfolder.transaction(folder, "second"):
            pass
    holder.kill()  # SIGKILL: no cleanup runs; the kernel drops its lock, its staging folder stays behind
    holder.wait()
    assert leftovers(tmp_path) == [f".run.staging-{holder.pid}"]
    with runfolder.transaction(folder, "after") as staged:
        (staged / "ok").write_text("ok")
    assert (folder / "ok").is_file() and not leftovers(tmp_path)


def test_signals_during_native_code_wait_for_its_end_then_unwind() -> None:
    """What `run` does around PyTorch: a KeyboardInterrupt raised inside its native callbacks aborts the
    process (`terminate called ... pybind11::error_already_set`, exit -6, staging folder left)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # As at a terminal: a suite started in the background (`cmd &`, nohup) inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _deferred_then_raised()
    finally:
        signal.signal(signal.SIGINT, handlers[signal.SIGINT])


def _deferred_then_raised() -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, raised in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, runfolder.Terminated)):
        finished = False
        with pytest.raises(KeyboardInterrupt) as caught:
            with runfolder.deferred_interrupts():
                signal.pthread_kill(threading.get_ident(), sig)  # to this thread: os.kill may reach another one
                time.sleep(0.05)  # the signal arrives here, and is only noted
                finished = True
        assert finished and type(caught.value) is raised
        assert {s: signal.getsignal(s) for s in handlers} == handlers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's: ignored stays ignored
    with runfolder.deferred_interrupts():
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# --- real runs, real signals ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def completed(cpu_run: Path, tmp_path_factory) -> Path:
    """A completed 12-image run whose bytes each interruption must leave as they are."""
    return copy_run(cpu_run, tmp_path_factory.mktemp("completed") / "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("after", [2, 10, 20])
def test_an_interrupted_rerun_leaves_the_completed_run(completed: Path, data_root: Path, tmp_path: Path,
                                                       sig: signal.Signals, after: int, catalogue: list) -> None:
    run = copy_run(completed, tmp_path / "cpu")
    before = snapshot(run)
    proc = spawn("run", "--target", "cpu", "--data", data_root, "--out", run)  # all 566 images: still busy at 20 s
    time.sleep(after)
    assert proc.poll() is None, "the re-run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    word, code = ("interrupted", 130) if sig == signal.SIGINT else ("terminated", 143)
    catalogue.append((f"re-run, {sig.name} after {after:2d} s", "python -m toolkit run --target cpu --out <tmp>/cpu",
                      proc.returncode, err.strip().splitlines()[-1].replace(str(tmp_path), "<tmp>")))
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"{word}: stopped cleanly, {run} kept as it was"
    assert "Traceback" not in err
    assert snapshot(run) == before and not leftovers(tmp_path)
    result = json.loads((run / "result.json").read_text())
    ap = evaluated(run, data_root)
    assert {s: ap[s] for s in ("easy", "medium", "hard")} == result["ap"]
    assert ap["images"] == result["images"] == 12


@pytest.mark.slow
def test_sigterm_during_export_leaves_nothing(data_root: Path, tmp_path: Path, catalogue: list) -> None:
    run = tmp_path / "fresh"
    proc = spawn("run", "--target", "cpu", "--data", data_root, "--limit", 3, "--out", run)
    staged = tmp_path / f".fresh.staging-{proc.pid}"
    deadline = time.monotonic() + 60
    while not (staged / "centerface.pth").exists() and time.monotonic() < deadline:  # ported, now exporting
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    catalogue.append(("SIGTERM during export", "python -m toolkit run --target cpu --limit 3 --out <tmp>/fresh",
                      proc.returncode, err.strip().splitlines()[-1].replace(str(tmp_path), "<tmp>")))
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == f"terminated: stopped cleanly, {run} not created"
    assert list(tmp_path.iterdir()) == []  # no folder, no staging, no hidden half-written ONNX


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_turned_away(data_root: Path, tmp_path: Path, catalogue: list) -> None:
    run = tmp_path / "busy"
    first = spawn("run", "--target", "cpu", "--data", data_root, "--limit", 40, "--out", run)
    deadline = time.monotonic() + 60
    while not (tmp_path / f".busy.staging-{first.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    code, _, err = run_cli("run", "--target", "cpu", "--data", data_root, "--limit", 3, "--out", run)
    took = time.monotonic() - t0
    catalogue.append(("a second writer into a busy folder", "python -m toolkit run --target cpu --limit 3 --out <tmp>/busy",
                      code, err.strip().replace(str(tmp_path), "<tmp>")))
    assert code == 2 and took < 2, (code, took, err)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {run}: busy: another command is writing it (pid {first.pid}, started ")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    result = json.loads((run / "result.json").read_text())
    ap = evaluated(run, data_root)
    assert result["images"] == ap["images"] == 40
    assert {s: ap[s] for s in ("easy", "medium", "hard")} == result["ap"]


@pytest.mark.slow
def test_a_killed_writer_is_cleaned_up_by_the_next(completed: Path, data_root: Path, tmp_path: Path) -> None:
    run = copy_run(completed, tmp_path / "cpu")
    before = snapshot(run)
    proc = spawn("run", "--target", "cpu", "--data", data_root, "--limit", 40, "--out", run)
    time.sleep(4)
    proc.kill()  # SIGKILL: nothing of the writer runs; only its line in the lock file stays
    proc.wait()
    after = snapshot(run)
    assert json.loads((run / ".lock").read_text())["pid"] == proc.pid
    assert after.pop(".lock") != before.pop(".lock") and after == before
    assert leftovers(tmp_path) == [f".cpu.staging-{proc.pid}"]
    code, _, err = run_cli("run", "--target", "cpu", "--data", data_root, "--limit", 3, "--out", run)
    assert code == 0, err
    assert json.loads((run / "result.json").read_text())["images"] == 3 and not leftovers(tmp_path)


def test_run_keeps_the_bench_section_and_detect_replaces_its_pictures(completed: Path, data_root: Path,
                                                                      wider_images, tmp_path: Path) -> None:
    run = copy_run(completed, tmp_path / "cpu")
    code, _, err = run_cli("bench", "--target", "cpu", "--data", data_root, "--batch-sizes", 1, "--images", 2,
                           "--iters", 2, "--warmup", 0, "--out", run)
    assert code == 0, err
    code, _, err = run_cli("run", "--target", "cpu", "--data", data_root, "--limit", 2, "--out", run)
    assert code == 0, err
    result = json.loads((run / "result.json").read_text())
    assert result["images"] == 2 and result["bench"]["batch_sizes"]["1"]["e2e"]["throughput"] > 0

    out = tmp_path / "detect"
    for images in (wider_images[:2], wider_images[2:3]):
        code, _, err = run_cli("detect", *images, "--out", out)
        assert code == 0, err
    assert len(list((out / "pictures").glob("*.jpg"))) == 1
    assert len(json.loads((out / "detections.json").read_text())["images"]) == 1


# --- links and mounts: nothing of the user's is lost through the staging copy ------------------------------

def tree_state(folder: Path) -> dict[str, str]:
    """Every entry under `folder`, not following links: a file's sha256, a link's target, a folder's 'dir'."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            state[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else (
                "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def test_a_folder_holding_anything_the_toolkit_did_not_make_is_refused_untouched(tmp_path: Path) -> None:
    """Its own files, links to them, a folder of another kind: refused before the lock file, nothing written."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("the user's")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "family.jpg").write_bytes(b"a photo")
    (photos / "shared").symlink_to(tmp_path / "elsewhere")
    before = tree_state(photos)
    with pytest.raises(InputError, match=r"photos: holds 2 entries the toolkit did not make \(family.jpg, shared\)"):
        with runfolder.transaction(photos, "test"):
            pass
    assert tree_state(photos) == before and not leftovers(tmp_path)
    run = made(tmp_path / "run", {"x.txt": "x"})
    with pytest.raises(InputError, match="a folder `run` wrote; detect writes its own"):
        with runfolder.transaction(run, "test", kind="detect"):
            pass


def test_links_in_place_of_the_toolkits_entries_are_replaced_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("the user's")
    (elsewhere / "lockfile").write_text("the user's lock-like file")
    before = tree_state(elsewhere)
    folder = made(tmp_path / "run", {"predictions/a.txt": "a", "pictures/b.txt": "b"})
    fileio.remove(folder / "predictions")
    (folder / "predictions").symlink_to(elsewhere)  # a link where the toolkit's folder was
    fileio.remove(folder / ".lock")
    (folder / ".lock").symlink_to(elsewhere / "lockfile")
    with pytest.raises(RuntimeError), runfolder.transaction(folder, "test") as staged:
        fileio.write_text(staged / "predictions" / "keep.txt", "overwritten?")
        raise RuntimeError("fails after writing")
    assert tree_state(elsewhere) == before and (folder / "predictions").is_symlink()  # kept as it was
    with runfolder.transaction(folder, "test") as staged:
        fileio.write_text(staged / "predictions" / "keep.txt", "the toolkit's")
    assert tree_state(elsewhere) == before and not leftovers(tmp_path)
    assert not (folder / "predictions").is_symlink() and (folder / "predictions" / "keep.txt").read_text() == "the toolkit's"
    assert not (folder / ".lock").is_symlink() and (folder / "pictures" / "b.txt").read_text() == "b"


def test_a_rerun_keeps_the_folders_mode_and_group(tmp_path: Path) -> None:
    import grp

    folder = made(tmp_path / "run", {"x.txt": "x"})
    group = grp.getgrnam("nogroup").gr_gid if os.geteuid() == 0 else os.getgid()
    os.chown(folder, -1, group)
    os.chmod(folder, 0o2770)
    made(folder, {"y.txt": "y"})
    assert (os.stat(folder).st_mode & 0o7777, os.stat(folder).st_gid) == (0o2770, group)


def test_out_as_a_link_updates_its_target_and_stays_a_link(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    target = copy_run(cpu_run, tmp_path / "real" / "cpu")
    (tmp_path / "link").symlink_to(target)
    code, _, err = run_cli("run", "--target", "cpu", "--data", data_root, "--limit", 2, "--out", tmp_path / "link")
    assert code == 0, err
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == str(target)
    assert json.loads((target / "result.json").read_text())["images"] == 2  # the target holds the new run
    assert not leftovers(tmp_path) and not leftovers(tmp_path / "real")


def test_out_equal_to_or_inside_the_data_set_is_refused_and_the_data_set_kept(data_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for entry in ("eval_tools", "wider_face_split"):
        (data / entry).parent.mkdir(parents=True, exist_ok=True)
        (data / entry).symlink_to(data_root / entry)
    (data / "WIDER_val").symlink_to(data_root / "WIDER_val")
    before = tree_state(data)
    for out in (data, data / "runs" / "cpu"):
        code, _, err = run_cli("run", "--target", "cpu", "--data", data, "--limit", 2, "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "pass --out a folder outside --data" in err, err
        assert "inside the data set" in err if out != data else "is the data set" in err
    assert tree_state(data) == before and not leftovers(tmp_path)


def test_out_at_a_mount_point_is_refused_before_any_work(tmp_path: Path) -> None:
    import subprocess

    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        code, _, err = run_cli("run", "--target", "cpu", "--limit", 1, "--out", mount)
        assert code == 2 and err.strip() == (f"error: {mount}: a mount point, which cannot be swapped for its staged copy "
                                             "by a rename (hint: pass --out a folder inside it)"), err
        assert not leftovers(tmp_path) and list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)

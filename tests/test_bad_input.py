"""The bad-input catalogue: every fault a user met, run as the user runs it (a real process, real files,
real file systems), ends in one line and exit 2 (3: unavailable), never a traceback, and leaves the run
folder byte for byte as it was. Each case adds a row to the catalogue table (see conftest)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli import invoke, run_cli
from test_run_folder import copy_run, leftovers, snapshot
from toolkit.errors import InputError


@dataclass
class Case:
    name: str
    args: Callable[[Path], list]  # workspace -> CLI arguments
    code: int
    says: str  # a part of the one line
    folder: str | None = "run"  # the folder (in the workspace) that must stay byte for byte, if any
    early: bool = True  # fails before any work: stderr is exactly that one line
    needs: list[str] = field(default_factory=list)  # workspace pieces to make first
    memory: int | None = None  # the process's address space (`ulimit -v`), bytes


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real small or read-only file system (root only)."""
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def wider_root(where: Path, data_root: Path, images: dict[str, bytes], ground_truth: bool = True) -> Path:
    """A WIDER FACE root holding `images` (event/name -> bytes) and, optionally, the real ground truth."""
    for rel, data in images.items():
        (where / "WIDER_val" / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / "WIDER_val" / "images" / rel).write_bytes(data)
    if ground_truth:
        (where / "eval_tools").symlink_to(data_root / "eval_tools")
    return where


def first_images(data_root: Path, n: int) -> dict[str, bytes]:
    from toolkit.data.wider import list_val_images

    return {f"{p.parent.name}/{p.name}": p.read_bytes() for _, p in list_val_images(data_root)[:n]}


def wrong_shapes_model(path: Path) -> Path:
    """Input `image`, the four right output names, but each output is the input itself (wrong shapes)."""
    import onnx
    from onnx import TensorProto, helper

    names = ["heatmap", "scale", "offset", "landmarks"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], [n]) for n in names], "wrong",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, "H", "W"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", 3, "H", "W"]) for n in names])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


PREDICTION_FILES = {"nan-preds": "x\n1\n1 2 3 4 nan\n", "inf-preds": "x\n1\ninf 2 3 4 0.9\n", "negative-preds": "x\n1\n1 2 -3 4 0.9\n", "columns-preds": "x\n1\n1 2 3 4\n", "count-preds": "x\n2\n1 2 3 4 0.9\n"}

CASES = [
    Case("--out under a file", lambda w: ["run", "--out", w / "afile" / "run"], 2, "afile", folder=None, needs=["afile"]),
    Case("--out in /proc", lambda w: ["run", "--out", "/proc/x/run"], 2, "/proc/x", folder=None),
    Case("--out on a read-only file system", lambda w: ["run", "--out", w / "ro" / "run"], 2, "Read-only file system",
         folder=None, needs=["ro"]),
    Case("full disk", lambda w: ["run", "--limit", 2, "--out", w / "full" / "run"], 2, "No space left on device",
         folder="full/run", early=False, needs=["full"]),
    Case("evaluate --json <a folder>", lambda w: ["evaluate", w / "run" / "predictions", "--json", w / "run"], 2,
         "is a folder"),
    Case("non-UTF-8 prediction file", lambda w: ["evaluate", w / "latin1-preds"], 2, "not UTF-8 text",
         needs=["latin1-preds"]),
    Case("non-UTF-8 ground-truth .txt", lambda w: ["evaluate", w / "run" / "predictions", "--gt", w / "latin1-gt"], 2,
         "wider_face_val_bbx_gt.txt:3: not UTF-8 text", needs=["latin1-gt"]),
    Case("malformed ground-truth .txt names its line", lambda w: ["evaluate", w / "run" / "predictions", "--gt", w / "bad-gt"],
         2, "wider_face_val_bbx_gt.txt:5: malformed", needs=["bad-gt"]),
    Case("negative --size", lambda w: ["run", "--size=-800x-800", "--out", w / "run"], 2, "must be positive"),
    Case("convert --onnx <random bytes>", lambda w: ["convert", "--target", "cpu", "--onnx", w / "random.onnx",
                                                     "--out", w / "run"], 2, "not an ONNX model", needs=["random.onnx"]),
    Case("detect --model with wrong output shapes", lambda w: ["detect", w / "one.jpg", "--model", w / "wrong.onnx",
                                                                "--out", w / "det"], 2, "output heatmap has shape",
         early=False, needs=["wrong.onnx", "one.jpg"]),
    Case("--limit -1", lambda w: ["run", "--limit", -1, "--out", w / "run"], 2, "--limit -1: must be 1 or more"),
    Case("--limit 0", lambda w: ["run", "--limit", 0, "--out", w / "run"], 2, "--limit 0: must be 1 or more"),
    Case("--part 3/2", lambda w: ["run", "--part", "3/2", "--out", w / "run"], 2, "--part 3/2: expected K/N with 1 <= K <= N"),
    Case("--part half", lambda w: ["run", "--part", "half", "--out", w / "run"], 2, "--part half: expected K/N"),
    Case("a bad image half-way", lambda w: ["run", "--data", w / "bad-image-root", "--out", w / "run"], 2,
         "truncated JPEG", early=False, needs=["bad-image-root"]),
    Case("310p without CANN", lambda w: ["run", "--target", "310p", "--out", w / "run"], 3, "unavailable: target 310p"),
    Case("a first run that fails early makes no folder", lambda w: ["run", "--data", w / "no-gt-root", "--out", w / "new"],
         2, "missing wider_easy_val.mat", folder=None, early=False, needs=["no-gt-root"]),
    Case("--weights that are not the official file", lambda w: ["run", "--weights", w / "random.onnx", "--out", w / "run"],
         2, "hint: pass the official file", early=False, needs=["random.onnx"]),
    Case("unknown --mode", lambda w: ["run", "--mode", "cloud", "--out", w / "run"], 2,
         "--mode 'cloud'"),
    Case("detect --threshold nan", lambda w: ["detect", w / "one.jpg", "--threshold", "nan", "--out", w / "det"], 2,
         "--min-score nan: must be a finite number from 0 to 1", needs=["one.jpg"]),
    Case("detect --threshold 2", lambda w: ["detect", w / "one.jpg", "--threshold", 2, "--out", w / "det"], 2,
         "--min-score 2.0: must be a finite number from 0 to 1", needs=["one.jpg"]),
    Case("report --tolerance nan", lambda w: ["report", "--runs", w, "--tolerance", "nan"], 2,
         "--tolerance nan: must be a finite number 0 or more"),
    Case("report --tolerance -1", lambda w: ["report", "--runs", w, "--tolerance", -1], 2,
         "--tolerance -1.0: must be a finite number 0 or more"),
    Case("run --batch-size 100000", lambda w: ["run", "--batch-size", 100000, "--out", w / "run"], 2,
         "batch size 100000: its batches need about", early=False),
    Case("bench --batch-sizes 1,100000", lambda w: ["bench", "--target", "sim-310", "--batch-sizes", "1,100000",
                                                   "--out", w / "run"], 2, "batch size 100000: its batches need about"),
    Case("export --opset 99", lambda w: ["export", "--opset", 99, "--out", w / "run" / "x.onnx"], 2,
         "--opset 99: the toolkit exports opsets 13 to 20"),
    Case("report over a result.json of another shape", lambda w: ["report", "--runs", w / "odd-runs"], 2,
         "odd-runs/x/result.json: not a result.json the toolkit writes", folder=None, needs=["odd-runs"]),
    Case("report over a result.json with fields of other types", lambda w: ["report", "--runs", w / "odd-fields"], 2,
         "odd-fields/x/result.json: not a result.json the toolkit writes (TypeError", folder=None,
         needs=["odd-fields"]),
    Case("detect --out into a run folder", lambda w: ["detect", w / "one.jpg", "--out", w / "run"], 2,
         "a folder `run` wrote; detect writes its own", needs=["one.jpg"]),
    Case("prediction file with a NaN score", lambda w: ["evaluate", w / "nan-preds", "--gt", w / "run"], 2, "x.txt:3: a value that is not a finite number",
         folder=None, needs=["nan-preds"]),
    Case("prediction file with an infinite coordinate", lambda w: ["evaluate", w / "inf-preds", "--gt", w / "run"], 2, "x.txt:3: a value that is not a finite number",
         folder=None, needs=["inf-preds"]),
    Case("prediction file with a negative width", lambda w: ["evaluate", w / "negative-preds", "--gt", w / "run"], 2, "x.txt:3: a negative width or height",
         folder=None, needs=["negative-preds"]),
    Case("prediction file with four columns", lambda w: ["evaluate", w / "columns-preds", "--gt", w / "run"], 2, "x.txt:3: 4 values, expected 5 (x y w h score)",
         folder=None, needs=["columns-preds"]),
    Case("prediction file with a count that does not match", lambda w: ["evaluate", w / "count-preds", "--gt", w / "run"], 2, "x.txt: the count line says 2 boxes, the file has 1",
         folder=None, needs=["count-preds"]),
    Case("--size with --preprocess native", lambda w: ["run", "--preprocess", "native", "--size", "800x800",
                                                       "--out", w / "run"], 2,
         "--size 800x800 with --preprocess native: native inputs keep each image's own size"),
    Case("bench into another target's run folder", lambda w: ["bench", "--target", "cpu-buckets", "--batch-sizes", 1,
                                                              "--images", 2, "--out", w / "run"], 2,
         "a run folder of target cpu (stages.json), not of cpu-buckets"),
    Case("bench --batch-sizes 1,1", lambda w: ["bench", "--target", "sim-310", "--batch-sizes", "1,1", "--out", w / "run"],
         2, "batch sizes 1,1: expected positive integers, each once"),
    Case("calibrate --count 0", lambda w: ["calibrate", "--target", "cpu-int8", "--count", 0, "--out", w / "run"], 2,
         "--count 0: calibration takes 1 image or more", early=False),
    Case("--device-ids 0,0", lambda w: ["run", "--target", "sim-310", "--device-ids", "0,0", "--out", w / "run"], 2,
         "--device-ids '0,0': each device once"),
    Case("--device-ids beyond the simulated card", lambda w: ["run", "--target", "sim-310", "--device-ids", 7,
                                                              "--out", w / "run"], 2,
         "--device-ids 7: no simulated device 7 here (listed: 0,1,2,3)", early=False),
    # what a target file names stays its own: its name, its Dockerfile, the file it extends (issue 30, group 2)
    Case("a target file with no name, stored as ...toml", lambda w: ["run", "--target", w / "...toml", "--dry-run"], 2,
         "...toml: name (the file's own, as it has no name key) must be a plain name", folder=None, needs=["...toml"]),
    Case("a Dockerfile outside the repository", lambda w: ["build", "--target", w / "df.toml"], 2,
         "df.toml: [container] dockerfile must be a plain name", needs=["df.toml"]),
    Case("extends a file outside the repository", lambda w: ["run", "--target", w / "ext.toml", "--dry-run", "--out",
                                                             w / "run"], 2,
         "ext.toml: extends '../../../../etc/cpu.toml' lies outside the repository", needs=["ext.toml"]),
    # every file read is checked: encoding, shape, kind of file, size (group 3)
    Case("a target file that is not UTF-8", lambda w: ["run", "--target", w / "latin.toml", "--dry-run", "--out",
                                                       w / "run"], 2, "latin.toml:2: not UTF-8 text (byte 0xe9)",
         needs=["latin.toml"]),
    Case("a result.json that is not UTF-8", lambda w: ["report", "--runs", w / "latin-runs"], 2,
         "latin-runs/x/result.json:1: not UTF-8 text (byte 0xff)", folder="latin-runs", needs=["latin-runs"]),
    Case("a result.json that is null", lambda w: ["report", "--runs", w / "null-runs"], 2,
         "null-runs/x/result.json: not a result.json the toolkit writes", folder="null-runs", needs=["null-runs"]),
    Case('stages.json saying "artefact": 7', lambda w: ["run", "--stages", "infer", "--out", w / "run"], 2,
         "stages.json: convert.artefact must be a string, not the number 7", early=False, needs=["artefact-7"]),
    Case("stages.json naming a model outside the run folder", lambda w: ["run", "--stages", "infer", "--out", w / "run"],
         2, "stages.json: names '../../../etc/passwd', which is not inside", early=False, needs=["artefact-escape"]),
    Case("a truncated pr_curves.npz leaves the earlier report", lambda w: ["report", "--runs", w / "npz-runs"], 2,
         "pr_curves.npz: not a readable curves file", folder="npz-runs", needs=["truncated-npz"]),
    Case("a pr_curves.npz missing a key leaves the earlier report", lambda w: ["report", "--runs", w / "npz-runs"], 2,
         "pr_curves.npz: no array 'medium_precision'", folder="npz-runs", needs=["npz-missing-key"]),
    Case("compare-outputs on string arrays", lambda w: ["compare-outputs", w / "run", w / "strings.npz"], 2,
         "strings.npz: 0--Parade/", folder=None, needs=["strings.npz"]),
    Case("compare-outputs on zero-size arrays", lambda w: ["compare-outputs", w / "run", w / "empty.npz"], 2,
         "is empty (shape (0, 3))", folder=None, needs=["empty.npz"]),
    Case("a ground-truth .mat of the right fields and the wrong structure",
         lambda w: ["evaluate", w / "run" / "predictions", "--gt", w / "odd-mat"], 2,
         "wider_face_val.mat: 'face_bbx_list' is not laid out as in WIDER FACE's ground truth", needs=["odd-mat"]),
    Case("a 30000 x 30000 PNG under a memory limit", lambda w: ["detect", w / "big.png", "--out", w / "det"], 2,
         "big.png: 30000 x 30000 pixels need about 3.4 GiB to decode", folder=None, early=False, needs=["big.png"],
         memory=3 << 30),
    # nothing silent (group 4)
    Case("--part that selects no image", lambda w: ["run", "--data", w / "four-root", "--part", "5/5", "--out", w / "run"],
         2, "--part 5/5: selects no image", early=False, needs=["four-root"]),
    Case("--skip-bad when every image is unreadable", lambda w: ["run", "--data", w / "all-bad-root", "--skip-bad",
                                                                 "--out", w / "run"], 2,
         "every one of the 2 images was skipped", early=False, needs=["all-bad-root"]),
    Case("compare-outputs with an infinite value", lambda w: ["compare-outputs", w / "run", w / "inf.npz"], 1,
         "heatmap: values that are not finite", folder=None, early=False, needs=["inf.npz"]),
    Case("compare-outputs with a NaN", lambda w: ["compare-outputs", w / "run", w / "nan.npz"], 1,
         "heatmap: values that are not finite", folder=None, early=False, needs=["nan.npz"]),
    Case("a prediction file with a score of 1e308", lambda w: ["evaluate", w / "huge-score-preds", "--gt", w / "run"], 2,
         "x.txt:3: score 1e+308 is not from 0 to 1", folder=None, needs=["huge-score-preds"]),
    Case("a float TIFF with a NaN pixel", lambda w: ["detect", w / "nan.tiff", "--out", w / "det"], 2,
         "nan.tiff: 1 pixel value is not a finite number", folder=None, early=False, needs=["nan.tiff"]),
    # true words (group 5)
    Case("detect a FIFO", lambda w: ["detect", w / "fifo.jpg", "--out", w / "det"], 2,
         "fifo.jpg: a FIFO (named pipe), not a regular image file", folder=None, needs=["fifo.jpg"]),
    Case("a FIFO in a folder of images", lambda w: ["detect", w / "pipes", "--out", w / "det"], 2,
         "pipes/b.jpg: a FIFO (named pipe), not a regular image file", folder=None, needs=["pipes"]),
    Case("detect --model <a FIFO>", lambda w: ["detect", w / "one.jpg", "--model", w / "fifo.onnx", "--out", w / "det"], 2,
         "fifo.onnx: a FIFO (named pipe), not a regular ONNX model", folder=None, needs=["one.jpg", "fifo.onnx"]),
    Case("convert --onnx <a FIFO>", lambda w: ["convert", "--target", "cpu", "--onnx", w / "fifo.onnx", "--out",
                                               w / "run"], 2, "fifo.onnx: a FIFO (named pipe), not a regular ONNX model",
         needs=["fifo.onnx"]),
    # detect on videos and with a target (issue 31)
    Case("detect a video that is not there", lambda w: ["detect", w / "none.mp4", "--out", w / "det"], 2,
         "none.mp4: no such file", folder=None),
    Case("detect a text file named .mp4", lambda w: ["detect", w / "text.mp4", "--out", w / "det"], 2,
         "text.mp4: cannot be opened as a video", folder=None, early=False, needs=["text.mp4"]),
    Case("detect --end before --start", lambda w: ["detect", w / "one.jpg", "--start", 2, "--end", 1, "--out", w / "det"],
         2, "--end 1: must come after --start 2", folder=None, needs=["one.jpg"]),
    Case("detect --anonymize of another kind", lambda w: ["detect", w / "one.jpg", "--anonymize", "pixelate", "--out",
                                                          w / "det"], 2,
         "--anonymize 'pixelate': choose from blur, mosaic, solid, none", folder=None, needs=["one.jpg"]),
    Case("detect --model with --target", lambda w: ["detect", w / "one.jpg", "--model", w / "wrong.onnx", "--target",
                                                    "cpu", "--out", w / "det"], 2,
         "--model runs an ONNX model of yours; --target and --from run a target's deployment", folder=None,
         needs=["one.jpg", "wrong.onnx"]),
    Case("detect --target with --size", lambda w: ["detect", w / "one.jpg", "--target", "cpu", "--size", "800x800",
                                                   "--out", w / "det"], 2,
         "--preprocess and --size go with --model", folder=None, needs=["one.jpg"]),
    Case("detect --smooth -1", lambda w: ["detect", w / "one.jpg", "--smooth", -1, "--out", w / "det"], 2,
         "--smooth -1: must be 0 or more", folder=None, needs=["one.jpg"]),
    Case("detect a stream in a target's container", lambda w: ["detect", "rtsp://127.0.0.1:9/live", "--target", "cpu",
                                                               "--mode", "container", "--from", w / "run", "--out",
                                                               w / "det"], 2,
         "a stream or camera, which a target's container cannot reach"),
    Case("a file name holding a newline", lambda w: ["detect", w / "new\nline.jpg", "--out", w / "det"], 2,
         "new\\nline.jpg': a file name holding a line break", folder=None, needs=["newline"]),
]


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def big_png() -> bytes:
    """A 30000 x 30000 grey PNG of 876 KB (all black): small on disk, 900 MB decoded."""
    import struct
    import zlib

    side = 30000
    deflate = zlib.compressobj(9)
    body = b"".join(deflate.compress(bytes(side + 1)) for _ in range(side)) + deflate.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


def _tamper(path: Path, key: str, value: object) -> None:
    """Set `key` (a.b for nested) of a JSON file."""
    found = json.loads(path.read_text())
    *outer, last = key.split(".")
    inner = found
    for part in outer:
        inner = inner[part]
    inner[last] = value
    path.write_text(json.dumps(found))


def _runs_with_report(w: Path, name: str, spoil) -> None:
    """A runs folder holding the run and a report made of it; then `spoil`(its pr_curves.npz)."""
    copy_run(w / "run", w / name / "cpu")
    code, _, err = run_cli("report", "--runs", w / name)
    assert code == 0, err
    spoil(w / name / "cpu" / "pr_curves.npz")


def _npz(w: Path, name: str, change) -> None:
    saved = dict(np.load(w / "run" / "outputs.npz"))
    key = sorted(saved)[0]
    np.savez(w / name, **change(key, saved))


def _with(saved: dict, key: str, index: int, value: float) -> dict:
    changed = saved[key].copy()
    changed.flat[index] = value
    return {**saved, key: changed}


def _odd_mat(w: Path, data_root: Path) -> None:
    from scipy.io import savemat

    truth = w / "odd-mat" / "eval_tools" / "ground_truth"
    truth.mkdir(parents=True)
    for s in ("easy", "medium", "hard"):
        (truth / f"wider_{s}_val.mat").symlink_to(data_root / "eval_tools" / "ground_truth" / f"wider_{s}_val.mat")
    savemat(truth / "wider_face_val.mat", {"event_list": np.zeros(3), "file_list": np.zeros(3),
                                           "face_bbx_list": np.zeros(3)})


PIECES = {
    "...toml": lambda w, d: (w / "...toml").write_text('backend = "onnxruntime"\n'),
    "df.toml": lambda w, d: (w / "df.toml").write_text(
        'name = "df"\nbackend = "tensorrt"\nruns_in = "container"\n[container]\ndockerfile = "../../x"\n'),
    "ext.toml": lambda w, d: (w / "ext.toml").write_text('extends = "../../../../etc/cpu.toml"\n'),
    "latin.toml": lambda w, d: (w / "latin.toml").write_bytes('name = "latin"\ndescription = "caf\xe9"\n'.encode("latin-1")),
    "latin-runs": lambda w, d: (copy_run(w / "run", w / "latin-runs" / "x") / "result.json").write_bytes(b"\xff\xfe{}"),
    "null-runs": lambda w, d: (copy_run(w / "run", w / "null-runs" / "x") / "result.json").write_text("null"),
    "artefact-7": lambda w, d: _tamper(w / "run" / "stages.json", "convert.artefact", 7),
    "artefact-escape": lambda w, d: _tamper(w / "run" / "stages.json", "convert.artefact", "../../../etc/passwd"),
    "truncated-npz": lambda w, d: _runs_with_report(w, "npz-runs", lambda p: p.write_bytes(p.read_bytes()[:1000])),
    "npz-missing-key": lambda w, d: _runs_with_report(w, "npz-runs", lambda p: np.savez(
        p, **{k: v for k, v in np.load(p).items() if k != "medium_precision"})),
    "strings.npz": lambda w, d: _npz(w, "strings.npz", lambda key, saved: {key: np.array(["a", "b"])}),
    "empty.npz": lambda w, d: _npz(w, "empty.npz", lambda key, saved: {key: np.zeros((0, 3))}),
    "inf.npz": lambda w, d: _npz(w, "inf.npz", lambda key, saved: _with(saved, key, 5, np.inf)),
    "nan.npz": lambda w, d: _npz(w, "nan.npz", lambda key, saved: _with(saved, key, 7, np.nan)),
    "odd-mat": _odd_mat,
    "big.png": lambda w, d: (w / "big.png").write_bytes(big_png()),
    "four-root": lambda w, d: wider_root(w / "four-root", d, first_images(d, 4)),
    "all-bad-root": lambda w, d: wider_root(w / "all-bad-root", d, {f"0--Parade/bad_{i}.jpg": b"\xff\xd8\xff" + bytes(64)
                                                                     for i in range(2)}),
    "huge-score-preds": lambda w, d: ((w / "huge-score-preds" / "0--Parade").mkdir(parents=True),
                                      (w / "huge-score-preds" / "0--Parade" / "x.txt").write_text("x\n1\n1 2 3 4 1e308\n")),
    "nan.tiff": lambda w, d: cv2.imwrite(str(w / "nan.tiff"), np.where(np.arange(64 * 64 * 3).reshape(64, 64, 3) == 7,
                                                                       np.nan, 0.5).astype(np.float32)),
    "fifo.jpg": lambda w, d: os.mkfifo(w / "fifo.jpg"),
    "fifo.onnx": lambda w, d: os.mkfifo(w / "fifo.onnx"),
    "pipes": lambda w, d: ((w / "pipes").mkdir(), (w / "pipes" / "a.jpg").write_bytes(
        next(iter(first_images(d, 1).values()))), os.mkfifo(w / "pipes" / "b.jpg")),
    "text.mp4": lambda w, d: (w / "text.mp4").write_text("not a video, only text\n" * 100),
    "newline": lambda w, d: (w / "new\nline.jpg").write_bytes(next(iter(first_images(d, 1).values()))),
}


def make(piece: str, w: Path, data_root: Path, stack: contextlib.ExitStack) -> None:
    if piece in PIECES:
        PIECES[piece](w, data_root)
    elif piece == "afile":
        (w / "afile").write_text("a file, not a folder")
    elif piece == "ro":
        stack.enter_context(tmpfs(w / "ro", "ro,size=1m"))
    elif piece == "full":
        stack.enter_context(tmpfs(w / "full", "size=3m"))
        code, _, err = run_cli("run", "--dry-run", "--out", w / "full" / "run")  # an earlier command's folder
        assert code == 0, err
    elif piece == "latin1-preds":
        (w / "latin1-preds" / "0--Parade").mkdir(parents=True)
        (w / "latin1-preds" / "0--Parade" / "x.txt").write_bytes("x\n1\n1 2 3 4 0.9 caf\xe9\n".encode("latin-1"))
    elif piece in ("latin1-gt", "bad-gt", "no-gt-root"):
        truth = w / piece / "eval_tools" / "ground_truth"
        truth.mkdir(parents=True)
        if piece != "no-gt-root":
            for s in ("easy", "medium", "hard"):
                (truth / f"wider_{s}_val.mat").symlink_to(data_root / "eval_tools" / "ground_truth" / f"wider_{s}_val.mat")
        split = w / piece / "wider_face_split"
        split.mkdir()
        body = {"latin1-gt": "0--Parade/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0 d\xe9j\xe0\n",
                "bad-gt": "0--Parade/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n0--Parade/b.jpg\nmany\n",
                "no-gt-root": "0--Parade/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"}[piece]
        (split / "wider_face_val_bbx_gt.txt").write_bytes(body.encode("latin-1"))
        if piece == "no-gt-root":
            wider_root(w / piece, data_root, first_images(data_root, 2), ground_truth=False)
    elif piece in PREDICTION_FILES:
        (w / piece / "0--Parade").mkdir(parents=True)
        (w / piece / "0--Parade" / "x.txt").write_text(PREDICTION_FILES[piece])
    elif piece in ("odd-runs", "odd-fields"):
        (w / piece / "x").mkdir(parents=True)
        (w / piece / "x" / "result.json").write_text(
            "[1, 2, 3]" if piece == "odd-runs" else '{"target": "cpu", "ap": null, "throughput": 7, "artefacts": 1}')
    elif piece == "random.onnx":
        (w / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    elif piece == "wrong.onnx":
        wrong_shapes_model(w / "wrong.onnx")
    elif piece == "one.jpg":
        (w / "one.jpg").write_bytes(next(iter(first_images(data_root, 1).values())))
    elif piece == "bad-image-root":
        images = first_images(data_root, 6)
        bad = list(images)[3]
        images[bad] = images[bad][: len(images[bad]) // 2]  # cut in half
        wider_root(w / piece, data_root, images)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_keeps_the_folder(case: Case, cpu_run: Path, data_root: Path, tmp_path: Path,
                                                    catalogue: list) -> None:
    w = tmp_path
    copy_run(cpu_run, w / "run")
    with contextlib.ExitStack() as stack:
        for piece in case.needs:
            make(piece, w, data_root, stack)
        kept = w / case.folder if case.folder else None
        before = snapshot(kept) if kept else None
        code, _, err = run_cli(*case.args(w), cwd=w, memory=case.memory)
        lines = err.strip().splitlines()
        told = [line for line in lines if line.startswith(("error:", "unavailable:"))]
        shown = " ".join(str(a).replace(str(w), "<tmp>") for a in case.args(w))
        catalogue.append((case.name, f"python -m toolkit {shown}", code, told[-1].replace(str(w), "<tmp>") if told else ""))
        assert code == case.code, err
        assert "Traceback" not in err
        assert len(told) == 1 and told[0] == lines[-1] and case.says in told[0], err
        if case.early:
            assert len(lines) == 1, err
        if kept:
            assert snapshot(kept) == before
            assert not leftovers(kept.parent)
    if case.folder is None and "new" in str(case.args(w)[-1]):
        assert not (w / "new").exists()


def test_run_reads_every_image_type_and_names_what_has_no_truth(data_root: Path, tmp_path: Path) -> None:
    images = first_images(data_root, 4)
    names = list(images)
    png, upper = names[0], names[1]
    ok, encoded = cv2.imencode(".png", cv2.imdecode(np.frombuffer(images.pop(png), np.uint8), cv2.IMREAD_COLOR))
    images[png.replace(".jpg", ".png")] = encoded.tobytes()
    images[upper.replace(".jpg", ".JPG")] = images.pop(upper)
    images["0--Parade/not_in_the_ground_truth.jpeg"] = images[names[2]]
    root = wider_root(tmp_path / "root", data_root, images)
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["images"] == 5 and len(list((tmp_path / "run" / "predictions").glob("*/*.txt"))) == 5
    assert result["evaluation"]["without_ground_truth"] == ["0--Parade/not_in_the_ground_truth"]
    assert result["evaluation"]["images"] == 4
    assert "1 images have no ground truth" in err


def test_skip_bad_records_each_bad_image_and_goes_on(data_root: Path, tmp_path: Path) -> None:
    images = first_images(data_root, 5)
    bad = list(images)[2]
    images[bad] = b"\xff\xd8\xff" + bytes(64)
    root = wider_root(tmp_path / "root", data_root, images)
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--skip-bad", "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    key = bad.rsplit(".", 1)[0]
    assert result["skipped_images"] == [{"image": key, "reason": f"{root / 'WIDER_val' / 'images' / bad}: truncated JPEG (no end-of-image marker after its last scan)"}]
    assert result["images"] == 4 == result["evaluation"]["images"]


def test_an_ap_with_no_faces_is_null_with_a_reason(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    from toolkit.data.wider import load_ground_truth

    gt = load_ground_truth(data_root)
    key = next(k for k, t in gt.images.items() if len(t.keep["easy"]) == 0 and len(t.boxes))
    preds = tmp_path / "preds" / key.split("/")[0]
    preds.mkdir(parents=True)
    (preds / f"{key.split('/')[1]}.txt").write_text(f"{key}\n2\n10 10 20 20 0.9\n30 30 20 20 0.9\n")  # equal scores
    code, _, err = run_cli("evaluate", tmp_path / "preds", "--gt", data_root, "--json", tmp_path / "ap.json")
    assert code == 0, err

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in strict JSON")

    ap = json.loads((tmp_path / "ap.json").read_text(), parse_constant=no_constants)
    assert ap["easy"] is None and ap["ap_missing"]["easy"] == "no easy faces among the 1 evaluated images"
    assert ap["hard"] is not None and 0 <= ap["hard"] <= 1


def test_dry_run_shows_every_option_it_passes(data_root: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--target", "t4", "--dry-run", "--limit", 3, "--batch-size", 16, "--size", "1024x1024",
                             "--data", data_root, "--out", tmp_path / "t4")
    assert code == 0, err
    container = next(line for line in out.splitlines() if line.startswith("docker run"))
    assert "--limit 3 --size 1024x1024 --batch-size 16" in container
    assert "trtexec --onnx=/runs/t4/centerface.fp16.typed.onnx --shapes=image:16x3x1024x1024" in out  # the size reaches the engine
    plan = json.loads((tmp_path / "t4" / "plan.json").read_text())
    inside = plan["container"][plan["container"].index("--target") - 1:]  # after the image: the toolkit's own run
    assert inside[:8] == ["run", "--target", "t4", "--stages", "convert,infer", "--limit", "3", "--size"]
    assert inside[8:18] == ["1024x1024", "--batch-size", "16", "--device-ids", "all", "--mode", "host", "--out", "/runs/t4",
                            "--data"]  # the GPU the target names is the container's only one: inside, all it sees


def test_compare_outputs_names_the_images_it_could_not_pair(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("run", "--target", "cpu", "--data", data_root, "--limit", 3, "--out", tmp_path / "three")
    assert code == 0, err
    code, out, err = run_cli("compare-outputs", cpu_run, tmp_path / "three")
    assert code == 0, out + err
    assert f"note: 5 images only in {cpu_run}, not compared: " in err


def test_a_users_own_wrong_weights_are_not_to_be_deleted(tmp_path: Path) -> None:
    from toolkit.model import weights

    mine = tmp_path / "centerface.onnx"
    mine.write_bytes(b"not the weights")
    with pytest.raises(InputError) as err:
        weights.verify(mine)
    assert "delete" not in err.value.hint and "leave out --weights" in err.value.hint


def test_every_image_is_accounted_for(data_root: Path, tmp_path: Path) -> None:
    """A link to a missing image is listed with its reason; two images of one name in one event are
    refused naming both; a zero-byte image that sorts first is skipped with --skip-bad, parity included."""
    images = first_images(data_root, 4)
    names = list(images)
    root = wider_root(tmp_path / "root", data_root, images)
    event = root / "WIDER_val" / "images" / names[0].split("/")[0]
    (event / "0_gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (event / "00_empty.jpg").write_bytes(b"")  # sorts first: the parity check meets it first
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--skip-bad", "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    skipped = {s["image"].split("/")[1]: s["reason"] for s in result["skipped_images"]}
    assert skipped.keys() == {"0_gone", "00_empty"} and "a link to" in skipped["0_gone"]
    assert result["images"] == 4 == result["evaluation"]["images"]
    twin = names[1].rsplit(".", 1)[0] + ".png"
    (root / "WIDER_val" / "images" / twin).write_bytes(b"png")
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--out", tmp_path / "twins")
    assert code == 2 and "two images of one name in one event" in err and twin.split("/")[1] in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "twins").exists()


def test_a_run_with_no_ground_truth_keeps_its_predictions(data_root: Path, tmp_path: Path) -> None:
    images = {f"0--Parade/not_in_the_truth_{i}.jpg": data for i, data in enumerate(first_images(data_root, 2).values())}
    root = wider_root(tmp_path / "root", data_root, images)
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--out", tmp_path / "run")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["ap"] is None and "AP needs it" in result["evaluation"]["ap_missing"]
    assert len(list((tmp_path / "run" / "predictions").glob("*/*.txt"))) == 2 and "none of the 2 images has ground truth" in err


# Needs no Ray: the refusal comes before any engine starts.
def test_an_unknown_engine_or_a_lone_address_is_one_line(tmp_path: Path) -> None:
    result = invoke("run", "--engine", "spark", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--engine 'spark': choose from local, ray" in result.output
    result = invoke("run", "--address", "10.0.0.5:6379", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--address joins a Ray cluster: give --engine ray too" in result.output
    assert not (tmp_path / "run").exists()


def test_a_fifo_among_the_images_is_listed_with_why(data_root: Path, tmp_path: Path) -> None:
    root = wider_root(tmp_path / "root", data_root, first_images(data_root, 3))
    os.mkfifo(root / "WIDER_val" / "images" / "0--Parade" / "0_pipe.jpg")
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--out", tmp_path / "run", timeout=300)
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["images"] == 3 and [s["image"] for s in result["skipped_images"]] == ["0--Parade/0_pipe"]
    assert "a FIFO (named pipe), not a regular image file" in result["skipped_images"][0]["reason"]


def test_an_image_too_large_for_memory_is_named_with_the_figures_and_skipped(data_root: Path, tmp_path: Path,
                                                                            catalogue: list) -> None:
    """12000 x 9000 inferred at its own size needs about 20 GiB: refused before it is decoded, naming the image
    and the figures; --skip-bad records it and goes on."""
    images = first_images(data_root, 2)
    ok, huge = cv2.imencode(".jpg", np.zeros((9000, 12000, 3), np.uint8))
    images["0--Parade/0_huge.jpg"] = huge.tobytes()
    root = wider_root(tmp_path / "root", data_root, images)
    code, _, err = run_cli("run", "--target", "cpu", "--data", root, "--skip-bad", "--out", tmp_path / "run",
                           memory=8 << 30)
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    (skipped,) = result["skipped_images"]
    catalogue.append(("a 12000 x 9000 image with --skip-bad", "python -m toolkit run --skip-bad (ulimit -v 8 GiB)",
                      code, skipped["reason"].replace(str(tmp_path), "<tmp>")))
    assert skipped["image"] == "0--Parade/0_huge" and "0_huge.jpg: inference at its own size (12000 x 9024)" in \
        skipped["reason"] and "GiB is free here" in skipped["reason"]
    assert result["images"] == 2


def _failing_on_other_sizes(path: Path, official_onnx: Path, height: int, width: int) -> Path:
    """The official model made dynamic, behind a Reshape to one fixed input size: ONNX Runtime fails for real on
    an image of any other size (a device error on that image)."""
    import onnx
    from onnx import helper, numpy_helper

    from toolkit.model import official

    model = onnx.load_from_string(official.dynamic_model_bytes(official_onnx))
    graph = model.graph
    original = graph.input[0].name
    graph.initializer.append(numpy_helper.from_array(np.array([-1, 3, height, width], np.int64), "fixed_shape"))
    graph.node.insert(0, helper.make_node("Reshape", [original + "_given", "fixed_shape"], [original]))
    graph.input[0].name = original + "_given"
    onnx.save(model, str(path))
    return path


def test_a_device_error_names_the_image_and_its_whole_cause_and_skip_bad_skips_it(data_root: Path, wider_images,
                                                                                   official_onnx: Path,
                                                                                   tmp_path: Path) -> None:
    from toolkit import pipeline
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.data.preprocess import Preprocess
    from toolkit.data.wider import list_val_images

    items = list_val_images(data_root)[:6]
    pre = Preprocess("native")
    sizes = [pre.transform(*read_size(p)) for _, p in items]
    first = sizes[0]
    model = _failing_on_other_sizes(tmp_path / "fixed.onnx", official_onnx, first.in_height, first.in_width)
    odd = [k for (k, _), t in zip(items, sizes) if (t.in_height, t.in_width) != (first.in_height, first.in_width)]
    assert odd, "the slice needs images of another size"
    found, bad = {}, {}
    with OnnxRuntimeRunner(model) as runner:
        pipeline.run(items, runner, pre, lambda key, det, _o: found.__setitem__(key, det), on_bad=bad.__setitem__)
        assert set(bad) == set(odd) and set(found) == {k for k, _ in items} - set(odd)
        reason = bad[odd[0]]
        assert reason.startswith(f"{dict(items)[odd[0]]}: inference failed on this image (") and "Reshape" in reason
        with pytest.raises(InputError) as raised:
            pipeline.run(items, runner, pre, lambda *a: None)
    assert "inference failed on this image" in raised.value.message and "--skip-bad skips it" in raised.value.hint


def read_size(path: Path) -> tuple[int, int]:
    from toolkit.data.images import read_rgb

    height, width = read_rgb(path).shape[:2]
    return width, height


def test_file_names_and_bracketed_words_print_as_they_are(data_root: Path, tmp_path: Path) -> None:
    photo = tmp_path / "x [edited].jpg"
    photo.write_bytes(next(iter(first_images(data_root, 1).values())))
    code, out, err = run_cli("detect", photo, "--out", tmp_path / "det [v2]", env={"COLUMNS": "300"})
    assert code == 0, err
    assert f"-> {tmp_path / 'det [v2]' / 'detections.json'}" in out
    assert list(json.loads((tmp_path / "det [v2]" / "detections.json").read_text())["images"]) == [str(photo)]
    code, out, err = run_cli("run", "--help", env={"COLUMNS": "200"})
    assert code == 0 and "the target file's [tta], else" in out, out

"""The pipelined runner: streams change nothing but speed; errors stop every stage cleanly."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from toolkit import pipeline
from toolkit.backends.onnxruntime import OnnxRuntimeRunner
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError


@pytest.fixture(scope="module")
def model(net, tmp_path_factory) -> Path:
    from toolkit.model import export

    return export.export(net, tmp_path_factory.mktemp("pipe") / "m.onnx")


def detections(runner, items, batch_size=1) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    pipeline.run(items, runner, Preprocess("letterbox", 800, 800),
                 lambda key, det, _o: found.__setitem__(key, det.boxes), batch_size=batch_size)
    return found


def test_streams_and_batches_give_the_same_detections(model: Path, wider_images) -> None:
    items = [(str(i), p) for i, p in enumerate(wider_images[:6])]
    with OnnxRuntimeRunner(model, threads=2) as single, OnnxRuntimeRunner(model) as multi:
        assert single.info.streams == 1 and multi.info.streams >= 1
        ref = detections(single, items)
        for got in (detections(multi, items), detections(multi, items, batch_size=4)):
            assert got.keys() == ref.keys()
            for key in ref:
                np.testing.assert_allclose(got[key], ref[key], atol=1e-2)


def test_a_bad_image_stops_every_stage(model: Path, wider_images, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + bytes(100))
    items = [(str(i), p) for i, p in enumerate(wider_images[:3])] + [("bad", bad)]
    items += [(f"after{i}", p) for i, p in enumerate(wider_images[:3])]
    before = threading.active_count()
    with OnnxRuntimeRunner(model) as runner, pytest.raises(InputError, match="bad.jpg"):
        detections(runner, items)
    assert threading.active_count() == before  # no worker left behind


def test_ctrl_c_stops_cleanly(data_root: Path, tmp_path: Path) -> None:
    """SIGINT in the middle of a run: exit 130, one line, no worker left, no partial file."""
    import signal
    import time

    from cli import spawn

    out = tmp_path / "run"
    proc = spawn("run", "--target", "cpu", "--data", data_root, "--out", out)
    staged = tmp_path / f".run.staging-{proc.pid}"  # the run writes here until it succeeds
    deadline = time.time() + 120
    while time.time() < deadline and len(list((staged / "predictions").glob("*/*.txt"))) < 5:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: stopped cleanly, {out} not created"
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing left, hidden files included

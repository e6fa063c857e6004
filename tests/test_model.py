"""The PyTorch port reproduces the official ONNX; the export is valid, named and faithful."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from toolkit.backends.onnxruntime import OnnxRuntimeRunner
from toolkit.chain import parity
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError
from toolkit.model import export as exporter
from toolkit.model import port, weights
from toolkit.model.signature import OUTPUT_NAMES


def test_official_weights_are_pinned(official_onnx: Path) -> None:
    assert official_onnx.stat().st_size == weights.SIZE
    assert weights.sha256(official_onnx) == weights.SHA256


@pytest.mark.parametrize("mode", ["native", "letterbox"])
def test_pytorch_matches_official_onnx_on_wider_images(official_onnx, net, tmp_path, wider_images, mode) -> None:
    pre = Preprocess.parse(mode, "800x800")
    batches = [pre(read_rgb(p))[0][None] for p in wider_images[:3]]
    onnx_path = exporter.export(net, tmp_path / "m.onnx")
    result = parity(official_onnx, net, onnx_path, batches)
    assert result["pytorch_vs_official"]["heatmap"] <= 1e-4
    assert max(result["pytorch_vs_official"].values()) <= 1e-3
    assert result["onnx_export_vs_pytorch"]["heatmap"] <= 1e-4
    assert max(result["onnx_export_vs_pytorch"].values()) <= 1e-3


def test_dynamic_export_is_checked_and_named(net, tmp_path) -> None:
    path = exporter.export(net, tmp_path / "dyn.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 13
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", 3, "H", "W"]
    with OnnxRuntimeRunner(path) as runner:
        out = runner.infer(np.zeros((2, 3, 96, 160), np.float32))
    assert out["heatmap"].shape == (2, 1, 24, 40) and out["landmarks"].shape == (2, 10, 24, 40)


def test_static_export_has_the_asked_shape(net, tmp_path) -> None:
    path = exporter.export(net, tmp_path / "static.onnx", exporter.ExportShape.parse("16x3x800x800"))
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [16, 3, 800, 800]
    with OnnxRuntimeRunner(path) as runner, pytest.raises(InputError, match="does not fit"):
        runner.infer(np.zeros((1, 3, 800, 800), np.float32))


@pytest.mark.parametrize("text", ["16x3x801x800", "1x1x800x800", "banana", "0x3x800x800"])
def test_bad_export_shapes_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="shape"):
        exporter.ExportShape.parse(text)


def test_wrong_model_files_are_refused(tmp_path, pth) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.onnx: not a readable ONNX model"):
        port.port(junk, tmp_path / "x.pth")
    with pytest.raises(InputError, match="SHA-256"):
        weights.verify(junk)
    with pytest.raises(InputError, match="not a CenterFace state dict"):
        port.load_module(junk)
    with pytest.raises(InputError, match="ONNX Runtime cannot load"):
        OnnxRuntimeRunner(junk)


def test_another_onnx_graph_is_not_taken_for_centerface(tmp_path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"])], "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w, b])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(InputError, match="other.onnx"):
        port.state_dict_from_onnx(path)

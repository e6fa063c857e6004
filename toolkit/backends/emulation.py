"""A target's deployed numerics reproduced on the CPU, in ONNX Runtime: what `--mode emulate` runs.

- FP16 (atc, TensorRT): every float weight rounded to FP16, and every intermediate tensor rounded to
  FP16 by a Cast pair after the node that makes it; inputs and outputs stay FP32, as the chips store
  FP16 and hand back FP32 (`--output_type=FP32`). ONNX Runtime must not fold the Cast pairs away: the
  emulated model runs with basic graph optimisations only (ORT 1.32 kept them at every level, the
  fusions of the higher levels are not needed), and `tests/test_emulation.py` checks the rounding
  really happens.
- INT8: a QDQ model with the vendor's scheme (ONNX Runtime's static quantisation or NNCF's), FP16 elsewhere.

Every figure made this way is labelled emulated wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.backends.base import Runner
from toolkit.backends.sized import SizedRunner, static_per_size
from toolkit.errors import InputError
from toolkit.calibration import CalibrationSet

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FP16_SUFFIX = "__fp16"


@dataclass(frozen=True)
class Int8Scheme:
    """How a vendor quantises, as ONNX Runtime's static quantisation or NNCF (`nncf`) can reproduce it."""

    name: str
    method: str  # calibration: entropy, percentile, minmax (ONNX Runtime's), nncf
    activations_symmetric: bool  # False: with an offset (zero point)
    per_channel_weights: bool = True
    differs: tuple[str, ...] = ()  # what the emulation does not reproduce
    keep_fp16: tuple[str, ...] = ()  # node-name patterns the deployment holds in FP16
    quantised_ops: tuple[str, ...] = ()  # Q/DQ on these op types' inputs only; empty: ONNX Runtime's default
    int32_bias: bool = True  # biases quantised to INT32 (ONNX Runtime's default); False: left in float
    equalise_depthwise: bool = False  # the depthwise convolutions' inputs scaled to one range first (equalise.py)

    def held(self, patterns: tuple[str, ...]) -> Int8Scheme:
        """The scheme with `patterns` held in FP16 (left unquantised)."""
        return replace(self, keep_fp16=tuple(patterns))

    def describe(self) -> str:
        acts = "symmetric" if self.activations_symmetric else "asymmetric (with offset)"
        weights = "per-channel" if self.per_channel_weights else "per-tensor"
        held = f"; held in FP16: {' '.join(self.keep_fp16)}" if self.keep_fp16 else ""
        ops = f" on {', '.join(self.quantised_ops)} inputs" if self.quantised_ops else ""
        equalised = ", depthwise inputs equalised" if self.equalise_depthwise else ""
        return (f"INT8{ops}: {acts} per-tensor activations ({self.method} calibration{equalised}), symmetric "
                f"{weights} weights; FP16 elsewhere{held}")


def fp16_rounded(src: Path, dst: Path, extra_outputs: tuple[str, ...] = ()) -> Path:
    """`src` with FP16 numerics: float weights rounded to FP16, every float tensor a node makes rounded
    to FP16 (Q/DQ nodes and their scales left alone). `extra_outputs` exposes intermediate tensors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    float_tensors = {v.name for v in (*graph.value_info, *graph.output, *graph.input)
                     if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    quant_inputs = {name for node in graph.node if node.op_type in QDQ_OPS for name in node.input}
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in quant_inputs:
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16).astype(np.float32), init.name))
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type in QDQ_OPS:
            continue
        nodes += rounded_outputs(node, float_tensors)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    for name in extra_outputs:
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", "c", "h", "w"]))
    onnx.checker.check_model(model)
    return fileio.write_bytes(dst, model.SerializeToString())


def calibrated_qdq(src: Path, dst: Path, calib: CalibrationSet, scheme: Int8Scheme, cache_dir: Path) -> Path:
    """The Q/DQ model of `scheme` (FP32 elsewhere), calibrated on `calib` (the target's recipe at its
    deployed shape): by NNCF (`nncf`), else by ONNX Runtime's static quantisation."""
    from toolkit.backends import nncf_quant
    from toolkit.backends.ort_quant import quantize

    if scheme.method == "nncf":
        return nncf_quant.quantize(src, calib, list(scheme.keep_fp16), dst, op_types=scheme.quantised_ops,
                                   signed=scheme.activations_symmetric, equalise=scheme.equalise_depthwise)
    return quantize(src, calib, scheme.method, list(scheme.keep_fp16), dst, cache_dir,
                    activations_symmetric=scheme.activations_symmetric, per_channel=scheme.per_channel_weights,
                    op_types=scheme.quantised_ops, int32_bias=scheme.int32_bias, equalise=scheme.equalise_depthwise)


def rounded_outputs(node, names: set[str]) -> list:
    """The Cast pair (to FP16 and back) after each output of `node` named in `names`, which then carries
    FP16-rounded values under its own name (the node writes `<name>__fp32`)."""
    from onnx import TensorProto, helper

    pairs = []
    for i, name in enumerate(node.output):
        if name in names:
            node.output[i] = f"{name}__fp32"
            pairs += [helper.make_node("Cast", [f"{name}__fp32"], [name + FP16_SUFFIX], to=TensorProto.FLOAT16,
                                       name=f"{name}/to_fp16"),
                      helper.make_node("Cast", [name + FP16_SUFFIX], [name], to=TensorProto.FLOAT, name=f"{name}/to_fp32")]
    return pairs


def int8_qdq(src: Path, dst: Path, calib: CalibrationSet, scheme: Int8Scheme, cache_dir: Path) -> Path:
    """The calibrated Q/DQ model of `scheme`, then FP16 numerics for everything left in float."""
    return fp16_rounded(calibrated_qdq(src, dst.with_name(dst.stem + ".qdq.onnx"), calib, scheme, cache_dir), dst)


EMULATED = "centerface.emulated"


def build(onnx_path: Path, out: Path, precision: str, sizes: list[tuple[int, int]], scheme: Int8Scheme | None,
          calib: CalibrationSet | None) -> list[Path]:
    """The emulated model for `precision` (fp16, or int8 with `scheme` calibrated on `calib`), one static
    copy per deployed input size (batch dynamic)."""
    main = out / f"{EMULATED}.onnx"
    if precision == "fp16":
        fp16_rounded(onnx_path, main)
    elif precision == "int8":
        if scheme is None or calib is None:
            raise InputError("INT8 emulation needs the vendor's scheme and the target's calibration set")
        int8_qdq(onnx_path, main, calib, scheme, out / "calibration" / "cache")
    else:
        raise InputError(f"precision {precision!r}: emulation reproduces fp16 and int8 numerics")
    return static_per_size(main, out, EMULATED, sizes)


def record(precision: str, scheme: Int8Scheme | None, sizes: list[tuple[int, int]], device: str,
           differs: tuple[str, ...] = ()) -> dict:
    """What result.json says of an emulated run: that it is one, how, and what the device does otherwise."""
    numerics = scheme.describe() if scheme else "FP16: weights and every intermediate tensor rounded to FP16, FP32 outputs"
    return {"emulated": True, "device": device, "runtime": "onnxruntime (CPU)", "numerics": numerics,
            "scheme": scheme.name if scheme else "fp16", "input_sizes": [f"{w}x{h}" for w, h in sizes],
            "differs": [*(scheme.differs if scheme else ()), *differs]}


def emulation_runner(models: list[Path], sizes: list[tuple[int, int]], through=None) -> Runner:
    """ONNX Runtime over the emulated model(s) (one per size when there are several), with basic graph
    optimisations only, so the FP16 Cast pairs stay. `through` wraps each model's input path (AIPP)."""
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    def one(path: Path) -> Runner:
        runner = OnnxRuntimeRunner(path, optimisation="basic", shared_arena=len(models) > 1)
        return through(runner) if through else runner

    if len(models) == 1:
        return one(models[0])
    return SizedRunner({(h, w): one(m) for m, (w, h) in zip(models, sizes)}, "emulation")

"""Per-channel ranges for the inputs of depthwise convolutions, in a per-tensor quantiser's model.

MobileNetV2's expansion convolution (then a Relu) feeds a depthwise convolution whose channels span very different
ranges: one per-tensor scale gives the narrow channels a few levels. NNCF quantises these inputs per channel, which
ONNX Runtime's integer convolution (QLinearConv) cannot run, TensorRT's parser refuses, and AMCT does not do (each
takes one scale per activation). A Relu commutes with a positive scale, and both convolutions' weights are
quantised per output channel, which for the depthwise one is its input channel, so scaling channel c of that
tensor by f_c (the producer's weights and bias by f_c, the depthwise weights by 1 / f_c) changes neither the float
model's outputs nor its weights' quantisation. Choosing f_c so every channel spans the widest one's range gives
each channel the resolution a per-channel scale would (the idea of Nagel et al.'s cross-layer equalisation, ICCV
2019, where the scale is free). A target's file switches it on for its quantiser (`wanted`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.errors import InputError

DEAD = 1e-3  # a channel whose range is below this share of the widest keeps its scale (nothing to resolve)
FACTORS = "centerface.equalised"  # a Q/DQ model's metadata key: its depthwise inputs' factors (JSON), if any


def wanted(target) -> bool:
    """Whether the target's file asks for the depthwise inputs equalised before quantisation (`[calibration]
    equalise_depthwise`), whichever quantiser it uses."""
    return bool(target.extra.get("calibration", {}).get("equalise_depthwise", False))


@dataclass(frozen=True)
class Pair:
    producer: object  # Conv, group 1, read only by the Relu
    relu: object
    depthwise: object  # Conv with one group per channel, the Relu's only reader


def pairs(model) -> list[Pair]:
    """Every producer -> Relu -> depthwise chain whose middle tensors nothing else reads."""
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    made_by = {out: node for node in model.graph.node for out in node.output}
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for relu in model.graph.node:
        producer = made_by.get(relu.input[0]) if relu.op_type == "Relu" else None
        after = readers.get(relu.output[0], [])
        if producer is None or producer.op_type != "Conv" or _group(producer) != 1 or len(after) != 1:
            continue
        depthwise = after[0]
        if (len(readers[producer.output[0]]) == 1 and depthwise.op_type == "Conv" and len(producer.input) == 3
                and producer.input[1] in inits and depthwise.input[1] in inits
                and _group(depthwise) == inits[depthwise.input[1]].dims[0] == inits[producer.input[1]].dims[0]):
            found.append(Pair(producer, relu, depthwise))
    return found


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def channel_peaks(model, found: list[Pair], batches: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Each pair's Relu output: its largest value per channel over `batches`."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [p.relu.output[0] for p in found]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks: dict[str, np.ndarray] = {}
    for batch in batches:
        for name, value in zip(names, session.run(names, {session.get_inputs()[0].name: batch})):
            peak = value.max(axis=(0, *range(2, value.ndim)))
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks


def equalised(model, batches: Iterable[np.ndarray]) -> tuple[object, dict[str, list[float]]]:
    """`model` with the depthwise inputs' channels scaled to one range (see the module's words), and the factors
    per scaled tensor (for `scaled`)."""
    found = pairs(model)
    peaks = channel_peaks(model, found, batches)
    factors = {}
    for pair in found:
        peak = peaks[pair.relu.output[0]].astype(np.float64)
        widest = float(peak.max())
        factors[pair.relu.output[0]] = np.where(peak > DEAD * widest, widest / np.maximum(peak, 1e-30), 1.0).tolist()
    return scaled(model, factors), factors


def write_equalised(model_path: Path, batches: Iterable[np.ndarray], out: Path) -> dict[str, list[float]]:
    """Write the model at `model_path`, equalised over `batches`, to `out`; the factors."""
    import onnx

    model, factors = equalised(onnx.load(str(model_path)), batches)
    fileio.write_with(out, lambda tmp: onnx.save(model, str(tmp)))
    return factors


def scaled(model, factors: dict[str, list[float]]):
    """`model` with each named Relu output's channels multiplied by its factors: the producer's weights and bias
    by them, the depthwise weights by their inverse."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}

    def scale(name: str, by: np.ndarray) -> None:
        values = numpy_helper.to_array(inits[name])
        shape = (-1,) + (1,) * (values.ndim - 1)
        inits[name].CopyFrom(numpy_helper.from_array((values * by.reshape(shape)).astype(values.dtype), name))

    for pair in pairs(model):
        if pair.relu.output[0] in factors:
            by = np.array(factors[pair.relu.output[0]])
            scale(pair.producer.input[1], by)
            scale(pair.producer.input[2], by)
            scale(pair.depthwise.input[1], 1.0 / by)
    return model


def record(qdq_model, factors: dict[str, list[float]]) -> None:
    """Keep `factors` in the Q/DQ model made from the equalised model, for `float_model_of`."""
    import onnx

    onnx.helper.set_model_props(qdq_model, {FACTORS: json.dumps(factors)})


def float_model_of(qdq_model: Path, float_model: Path, folder: Path) -> Path:
    """The float model `qdq_model` was quantised from: `float_model`, with the equalisation its metadata records
    applied (then written into `folder`)."""
    import onnx

    text = {p.key: p.value for p in onnx.load(str(qdq_model), load_external_data=False).metadata_props}.get(FACTORS)
    if text is None:
        return float_model
    model = onnx.load(str(float_model))
    out = folder / f"{float_model.stem}.equalised.onnx"
    onnx.save(scaled(model, _recorded(text, model, qdq_model)), str(out))
    return out


def _recorded(text: str, model, qdq_model: Path) -> dict[str, list[float]]:
    """The factors a Q/DQ model's metadata records, checked against the float model's pairs."""
    from onnx import numpy_helper

    channels = {p.relu.output[0]: len(numpy_helper.to_array(next(
        i for i in model.graph.initializer if i.name == p.producer.input[2]))) for p in pairs(model)}
    try:
        factors = json.loads(text)
        ok = isinstance(factors, dict) and all(
            channels.get(name) == len(values) and all(isinstance(v, (int, float)) and v > 0 for v in values)
            for name, values in factors.items())
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise InputError(f"{qdq_model}: metadata {FACTORS!r} is not an equalisation of this model's depthwise "
                         "inputs (a positive factor per channel of each)", "quantise it again with the toolkit")
    return factors

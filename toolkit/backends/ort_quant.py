"""ONNX Runtime static quantisation: QDQ, per-channel int8 weights, uint8 activations (the fast
pair on x86 VNNI), MinMax / Entropy / Percentile calibration, optional nodes kept in float."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
from pathlib import Path

from toolkit import fileio, reading
from toolkit.backends.equalise import record, write_equalised
from toolkit.calibration import CalibrationSet


class _Reader:
    """Feeds the calibration set one batch at a time (ORT collects per range: bounded memory)."""

    def __init__(self, calib: CalibrationSet, input_name: str) -> None:
        self.files = [calib.folder / name for name in calib.manifest["batches"]]
        self.input_name = input_name
        self.set_range(0, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending = iter(self.files[start_index:end_index])

    def get_next(self) -> dict | None:
        path = next(self.pending, None)
        return None if path is None else {self.input_name: reading.npy(path, "calibration batch")}

    def __iter__(self):
        return self


def matching_nodes(model_path: Path, patterns: list[str]) -> list[str]:
    """Node names matching any fnmatch pattern, e.g. '/head/*' for the four heads."""
    import onnx

    names = [n.name for n in onnx.load(str(model_path)).graph.node]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def float_inputs(model, held: set[str], float_model=None):
    """`model` with each held node reading the float tensors its quantised neighbours read through a Q/DQ pair:
    ONNX Runtime quantises a tensor once for all its readers, so an excluded node that shares its input with a
    quantised one (a neck's lateral convolution and the next backbone block) would read it quantised too. ONNX
    Runtime's default placement folds a Relu into the Q after a convolution (the Q's input is then the tensor
    before the Relu): given the `float_model` it quantised, the held node reads that tensor through a Relu again."""
    made_by = {out: node for node in model.graph.node for out in node.output}
    relus = {n.output[0] for n in float_model.graph.node if n.op_type == "Relu"} if float_model is not None else set()
    restored: dict[str, str] = {}
    for node in model.graph.node:
        if node.name not in held:
            continue
        for i, name in enumerate(node.input):
            dq = made_by.get(name)
            q = made_by.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                continue
            tensor = q.input[0]
            if tensor in relus and made_by.get(tensor) is not None and made_by[tensor].op_type != "Relu":
                tensor = restored.get(tensor) or _relu_again(model, made_by[tensor], tensor, restored)
            node.input[i] = tensor
    return _without_unread_pairs(model)


def _relu_again(model, producer, tensor: str, restored: dict[str, str]) -> str:
    """A Relu of `tensor` right after its producer, for held readers; its output's name."""
    import onnx

    restored[tensor] = f"{tensor}_relu_for_float"
    at = list(model.graph.node).index(producer) + 1
    model.graph.node.insert(at, onnx.helper.make_node("Relu", [tensor], [restored[tensor]],
                                                      name=f"{producer.name}/relu_for_float"))
    return restored[tensor]


def _without_unread_pairs(model):
    """`model` without the Q/DQ nodes nothing reads any more (a pair only a held node read), nor their scales."""
    while True:
        read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        unread = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not any(out in read for out in n.output)]
        if not unread:
            break
        for node in unread:
            model.graph.node.remove(node)
    for init in [i for i in model.graph.initializer if i.name not in read]:
        model.graph.initializer.remove(init)
    return model


def _equalised(prepared: Path, calib: CalibrationSet, out: Path) -> tuple[Path, dict[str, list[float]]]:
    """`prepared` with its depthwise inputs equalised on the calibration set, and the factors; written once to
    `out` (the factors beside it)."""
    factors_path = out.with_suffix(".json")
    if out.is_file() and factors_path.is_file():
        return out, reading.read_json(factors_path, dict)
    factors = write_equalised(prepared, calib.batches(), out)
    fileio.write_json(factors_path, factors)
    return out, factors


def quantize(fp32: Path, calib: CalibrationSet, method: str, exclude: list[str], out: Path, cache_dir: Path,
             activations_symmetric: bool = False, per_channel: bool = True, op_types: tuple[str, ...] = (),
             int32_bias: bool = True, equalise: bool = False) -> Path:
    """Write the QDQ INT8 model; the calibration ranges are cached per (model, set, method, symmetry).
    Activations: uint8 with a zero point (the fast pair on x86 VNNI), or symmetric int8 (TensorRT's).
    `op_types`: Q/DQ on the inputs of these op types only, never on their outputs (ONNX Runtime's default
    also quantises a quantised node's output); empty: ONNX Runtime's default placement. `int32_bias`
    False: biases stay float (TensorRT's DequantizeLinear takes INT8, not INT32). `equalise`: the depthwise
    convolutions' inputs first scaled to one range per tensor (see equalise.py); the Q/DQ model then records the
    factors (`equalise.record`), so its tensors compare with the float model's (`equalise.float_model_of`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_hash = hashlib.sha256(fp32.read_bytes()).hexdigest()[:12]
    ops = ("-" + "+".join(op_types) if op_types else "") + ("" if int32_bias else "-float-bias") + \
        ("-equalised" if equalise else "")
    cache = cache_dir / f"ranges-{model_hash}-{calib.sha256[:12]}-{method}{'-sym' if activations_symmetric else ''}{ops}.json"
    prepared = cache_dir / f"prepared-{model_hash}.onnx"
    if not prepared.is_file():
        fileio.write_with(prepared, lambda tmp: quant_pre_process(str(fp32), str(tmp), skip_symbolic_shape=True))
    factors = None
    if equalise:
        prepared, factors = _equalised(prepared, calib, cache_dir / f"equalised-{model_hash}-{calib.sha256[:12]}.onnx")
    float_model = onnx.load(str(prepared))  # what is quantised: held nodes read its float tensors
    input_name = float_model.graph.input[0].name

    held = matching_nodes(prepared, exclude) if exclude else []

    def write(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints a line per calibration batch
            _quantize(tmp)
        if held or factors is not None:
            model = onnx.load(str(tmp))
            if held:
                model = float_inputs(model, set(held), float_model)
            if factors is not None:
                record(model, factors)
            onnx.save(model, str(tmp))

    def _quantize(tmp: Path) -> None:
        quantize_static(
            str(prepared), str(tmp), _Reader(calib, input_name), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8 if activations_symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=held or None,
            op_types_to_quantize=list(op_types) or None,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            extra_options={"CalibStridedMinMax": 1, "ActivationSymmetric": activations_symmetric,
                           "WeightSymmetric": True, "OpTypesToExcludeOutputQuantization": list(op_types),
                           "QuantizeBias": int32_bias},
            calibration_cache_path=str(cache),
        )

    return fileio.write_with(out, write)

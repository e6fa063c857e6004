"""Quantisation sensitivity per layer: a float ONNX model and its Q/DQ twin compared tensor by tensor on real images
with ONNX Runtime's own debugging tool (onnxruntime.quantization.qdq_loss_debug), each convolution with its error,
its FLOPs at the input the images were given at, and its block of the network."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from toolkit.errors import InputError

CONVS = ("Conv", "ConvTranspose")


def block_of(node_name: str) -> str:
    """The network's part a node belongs to: `features.3` (the backbone's MobileNetV2 blocks), `neck`, `head`."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) > 1 and parts[0] == "backbone":
        return parts[1]
    return parts[0] if parts else node_name


def conv_flops(model_path: Path, height: int, width: int) -> dict[str, dict]:
    """Each convolution of the float model: its input tensor, block and FLOPs (2 x multiply-adds) on one 3 x H x W
    image, from ONNX's own shape inference at that input."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(model_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, height, width)):
        dim.Clear()
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    weights = {w.name: numpy_helper.to_array(w).shape for w in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type not in CONVS:
            continue
        kernel = weights[node.input[1]]  # Conv: (out, in / group, kh, kw); ConvTranspose: (in, out / group, kh, kw)
        spatial = shapes[node.output[0]][2:] if node.op_type == "Conv" else shapes[node.input[0]][2:]
        macs = int(np.prod(kernel)) * int(np.prod(spatial))
        found[node.name] = {"input": node.input[0], "block": block_of(node.name), "flops": 2 * macs}
    return found


def layer_errors(float_model: Path, qdq_model: Path, batches: Iterable[np.ndarray]) -> dict[str, dict]:
    """For each activation the Q/DQ model quantises: its signal-to-quantisation-noise ratio in dB, locally (its
    values before against after its Q/DQ pair) and against the float model (what the layers before it lost too),
    averaged over `batches` (the model's input, one array a run)."""
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_signal_to_quantization_noice_ratio,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    sums: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="centerface-sensitivity-") as tmp:
        augmented = {}
        for name, model in (("float", float_model), ("qdq", qdq_model)):
            augmented[name] = str(Path(tmp) / f"{name}.onnx")
            modify_model_output_intermediate_tensors(str(model), augmented[name])
        for batch in batches:  # one image at a time: every tensor of a network at 800x800 is ~1 GB
            float_acts = collect_activations(augmented["float"], _Reader(batch))
            matched = create_activation_matching(collect_activations(augmented["qdq"], _Reader(batch)), float_acts)
            for tensor, pair in matched.items():
                errors = sums.setdefault(tensor, {"local_sqnr_db": [], "vs_float_sqnr_db": []})
                errors["local_sqnr_db"].append(compute_signal_to_quantization_noice_ratio(pair["pre_qdq"], pair["post_qdq"]))
                if "float" in pair:
                    errors["vs_float_sqnr_db"].append(
                        compute_signal_to_quantization_noice_ratio(pair["float"], pair["post_qdq"]))
    if not sums:
        raise InputError(f"{qdq_model}: no Q/DQ pair to compare with {float_model} (not a Q/DQ model of it)")
    return {tensor: {k: round(float(np.mean(v)), 2) if v else None for k, v in errors.items()}
            for tensor, errors in sums.items()}


class _Reader:
    """One input for collect_activations (its CalibrationDataReader protocol: get_next until None)."""

    def __init__(self, batch: np.ndarray) -> None:
        self.pending: Iterator = iter([batch])
        self.name = "image"

    def get_next(self) -> dict | None:
        batch = next(self.pending, None)
        return None if batch is None else {self.name: batch}

    def __iter__(self):
        return iter(lambda: self.get_next(), None)


def per_convolution(float_model: Path, qdq_model: Path, batches: list[np.ndarray]) -> list[dict]:
    """Each convolution in network order: name, block, FLOPs (at the batches' input size), share of all FLOPs, and
    the error of its input's quantisation (dB; higher is better; None where its input is not quantised). The
    float model is equalised as `qdq_model` records, where it was."""
    from toolkit.backends.equalise import float_model_of

    height, width = batches[0].shape[2:]
    convs = conv_flops(float_model, height, width)
    with tempfile.TemporaryDirectory(prefix="centerface-float-") as tmp:
        errors = layer_errors(float_model_of(qdq_model, float_model, Path(tmp)), qdq_model, batches)
    total = sum(c["flops"] for c in convs.values())
    return [{"node": name, "block": c["block"], "input": c["input"], "flops": c["flops"],
             "flops_share": round(c["flops"] / total, 5), **errors.get(c["input"], {"local_sqnr_db": None,
                                                                                   "vs_float_sqnr_db": None})}
            for name, c in convs.items()]

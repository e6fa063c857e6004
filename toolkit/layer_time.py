"""Each convolution's measured time on this CPU: ONNX Runtime's own profiler over the FP32 model at an input, what
`calibrate --search` weighs a convolution's cost by where the target runs here (the time left in float when the
convolution is held there). ONNX Runtime renames nodes when it fuses and re-lays them out (a Conv with its Relu,
NCHWc: `<tensor>_nchwc`); a profiled node is traced back to its convolution by the tensor it writes."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from toolkit.sensitivity import CONVS

RUNS = 4  # profiled runs after one unprofiled warm-up
FUSED_AFTER = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Add")  # what ONNX Runtime folds into a Conv


def conv_of_tensor(model_path: Path) -> dict[str, str]:
    """Tensor name -> the convolution that writes it, directly or through the activation fused after it."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    writer = {out: node for node in graph.node for out in node.output}
    found = {node.output[0]: node.name for node in graph.node if node.op_type in CONVS}
    for node in graph.node:
        source = writer.get(node.input[0]) if node.input else None
        if node.op_type in FUSED_AFTER and source is not None and source.op_type in CONVS:
            found[node.output[0]] = source.name
    return found


def shares(model_path: Path, batch: np.ndarray) -> dict[str, float]:
    """Each convolution's share of the model's measured node time on `batch` (one image, float32 NCHW)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="centerface-layer-time-") as tmp:
        options = ort.SessionOptions()
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        session.run(None, feed)
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        for _ in range(RUNS + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    times: Counter = Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            times[event["name"].removesuffix("_kernel_time")] += event["dur"]
    convs, total = conv_of_tensor(model_path), sum(times.values()) or 1
    found: Counter = Counter()
    for name, micros in times.items():
        conv = convs.get(name.removesuffix("_nchwc")) or (name if name in convs.values() else None)
        if conv is not None:
            found[conv] += micros
    return {conv: round(micros / total, 5) for conv, micros in found.items()}

"""The guide's reference measurement (trtexec), on the network the toolkit builds: the command line for
a TensorRT major, and its performance summary parsed."""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.backends.base import ToolFigures
from toolkit.backends.tensorrt.majors import Major
from toolkit.errors import InputError
from toolkit.model.signature import INPUT_NAME

_STAT = re.compile(r"(min|max|mean|median|percentile\(\d+%\))\s*=\s*([-+0-9.eE]+)\s*ms")
_SECTIONS = {"Latency": "latency_ms", "Enqueue Time": "enqueue_ms", "H2D Latency": "h2d_ms",
             "GPU Compute Time": "gpu_compute_ms", "D2H Latency": "d2h_ms"}


def command(typed_onnx: Path, batch: int, height: int, width: int, major: Major, tool: str = "trtexec") -> list[str]:
    """trtexec on the typed ONNX the engine is built from, at one input shape: strongly typed (10.x opts in
    with --stronglyTyped, 11.x always is), none of the precision flags 11.x removed (--fp16, --int8,
    --calib, --best): the precision is the file's."""
    return [tool, f"--onnx={typed_onnx}", *major.trtexec_typing, f"--shapes={INPUT_NAME}:{batch}x3x{height}x{width}"]


def parse(text: str, batch: int, source: str = "trtexec output") -> ToolFigures:
    """Throughput (qps and images/s = 1000 x batch / mean GPU compute ms, the guide's fps) and the
    latency statistics of the performance summary."""
    found: dict = {"batch": batch}
    for line in text.splitlines():
        body = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())  # drop [date] [I] prefixes
        if body.startswith("Throughput:"):
            found["qps"] = float(body.split(":", 1)[1].split()[0])
            continue
        name = body.split(":", 1)[0]
        if name in _SECTIONS and "=" in body:
            found[_SECTIONS[name]] = {k.replace("percentile(", "p").rstrip("%)"): float(v) for k, v in _STAT.findall(body)}
    if "qps" not in found or "mean" not in found.get("gpu_compute_ms", {}):
        raise InputError(f"{source}: no `Throughput: N qps` and `GPU Compute Time: ... mean = N ms` (not a trtexec performance summary?)")
    found["qps_images_per_s"] = round(found["qps"] * batch, 2)
    return ToolFigures("trtexec", round(1000.0 * batch / found["gpu_compute_ms"]["mean"], 2), details=found)

"""What differs between the TensorRT majors the toolkit supports, in one table (checked against each
release's real bindings by tests/test_tensorrt_surface.py). The engine build itself is one: a strongly
typed network from a typed ONNX, with no precision flags and no calibrator.

Sources: NVIDIA/TensorRT at a892d222 (11.1 OSS): samples/common/sampleOptions.cpp says of
`--stronglyTyped` "[Deprecated] Strongly typed network is now enabled by default. This flag is a no-op.";
at release/10.16 it is "Create a strongly typed network. (default = disabled)". The creation flag
STRONGLY_TYPED is in both majors' bindings (accepted and ignored on 11, per NVIDIA's strong-typing
migration notes in that repository, .agents/skills/trt-strong-typing-migration).
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.errors import Unavailable


@dataclass(frozen=True)
class Major:
    number: int
    cuda: int  # the CUDA major of its builds (the image's cuda-python follows it)
    trtexec_typing: tuple[str, ...]  # what trtexec needs to build the typed ONNX strongly typed


MAJORS = {10: Major(10, 12, ("--stronglyTyped",)), 11: Major(11, 13, ())}


def major_of(version: str) -> Major:
    """The table row of a TensorRT version string ('10.13.3.9'), or Unavailable naming the supported ones."""
    try:
        number = int(version.split(".")[0])
    except ValueError:
        raise Unavailable(f"TensorRT {version!r}: not a version the toolkit can read") from None
    if number not in MAJORS:
        supported = " and ".join(str(m) for m in MAJORS)
        raise Unavailable(f"TensorRT {version}: the toolkit supports TensorRT {supported} (strongly typed builds)")
    return MAJORS[number]


IMAGE_DEFAULT = 11  # the TensorRT major of docker/tensorrt.Dockerfile's default base image (tested)

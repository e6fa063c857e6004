"""What of CANN this machine has: the environment script, atc, amct_onnx, ais_bench or the older
benchmark tool, npu-smi and the chips' device nodes."""

from __future__ import annotations

import glob
import importlib.util
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

SET_ENV = Path("/usr/local/Ascend/ascend-toolkit/set_env.sh")
BENCHMARK_TOOL = f"benchmark.{platform.machine()}"  # the older tool, e.g. benchmark.x86_64


@dataclass(frozen=True)
class Cann:
    set_env: bool
    atc: str | None
    amct_onnx: str | None
    ais_bench: bool
    benchmark: str | None
    npu_smi: str | None
    devices: tuple[str, ...]

    @classmethod
    def find(cls) -> Cann:
        return cls(
            set_env=SET_ENV.is_file(),
            atc=shutil.which("atc"),
            amct_onnx=shutil.which("amct_onnx") or (
                "amct_onnx" if importlib.util.find_spec("amct_onnx") is not None else None),
            ais_bench=importlib.util.find_spec("ais_bench") is not None,
            benchmark=shutil.which(BENCHMARK_TOOL),
            npu_smi=shutil.which("npu-smi"),
            devices=tuple(sorted(glob.glob("/dev/davinci[0-9]*"))),
        )

    def missing(self, convert: bool = True, quantise: bool = False, infer: bool = True) -> list[str]:
        """What a job needs and this machine lacks, named as a user would look for it."""
        gaps = []
        if not self.set_env and not self.atc:
            gaps.append(f"no {SET_ENV}")
        if convert and not self.atc:
            gaps.append("atc")
        if quantise and not self.amct_onnx:
            gaps.append("amct_onnx")
        if infer:
            if not (self.ais_bench or self.benchmark):
                gaps.append(f"ais_bench (or {BENCHMARK_TOOL})")
            if not self.devices:
                gaps.append("an Ascend NPU (/dev/davinci*)")
        return gaps

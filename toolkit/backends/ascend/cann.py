"""What of CANN this machine has: the environment script, atc, amct_onnx, ais_bench or the older
benchmark tool, npu-smi and the chips' device nodes."""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolkit.machine import HOST_DEVICES_ENV

# `npu-smi info`: each chip's second table row is `| <chip> <device (logic id)> | <PCIe bus id, or NA> | ...`
# (NA on an SoC board such as the Atlas 200 DK: tests/data/ascend/npu-smi-info-310.txt)
_CHIP_ROW = re.compile(r"^\|\s*(\d+)\s+(\d+)\s*\|\s*(?:[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d|NA)\s")
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
            ais_bench=ais_bench_installed(),
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

    @staticmethod
    def chips() -> list[int]:
        """The device ids (logic ids, what ACL and ais_bench take) of every chip `npu-smi info` lists. In the
        toolkit's container, ACL numbers the chips it was given from 0, whatever their host ids."""
        given = os.environ.get(HOST_DEVICES_ENV)
        if given:
            return list(range(len(given.split(","))))
        tool = shutil.which("npu-smi")
        if tool is None:
            return []
        proc = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=30)
        return parse_chips(proc.stdout) if proc.returncode == 0 else []


def ais_bench_installed() -> bool:
    """Ascend's ais_bench (its InferSession module and the aclruntime it drives); a bare `ais_bench`
    package can be the unrelated ais-bench-benchmark (an LLM evaluation tool some images carry)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("ais_bench.infer.interface", "aclruntime"))
    except ImportError:  # `ais_bench` is there but has no `infer` package
        return False


def parse_chips(npu_smi_info: str) -> list[int]:
    """Device ids from `npu-smi info`'s table (an Atlas 300 lists 4 chips, a 310P card one)."""
    return sorted({int(m.group(2)) for m in map(_CHIP_ROW.match, npu_smi_info.splitlines()) if m})

"""The TensorRT backend: FP16 / INT8 engines with an optimisation profile, a stream runner, trtexec."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit import machine
from toolkit.backends import emulation
from toolkit.backends.base import Backend, Check, Runner, Step, ToolFigures
from toolkit.backends.emulation import Int8Scheme
from toolkit.backends.pool import chosen_devices, pool_over
from toolkit.backends.tensorrt import trtexec
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.errors import ToolkitError, Unavailable

if TYPE_CHECKING:
    from toolkit.calibration import CalibrationSet
    from toolkit.targets import Target

# TensorRT's INT8: symmetric per-tensor activations from the entropy calibrator, symmetric per-channel
# weights, FP16 wherever a layer is not INT8 (the t4-int8 target builds with both flags).
INT8_SCHEME = Int8Scheme(
    "TensorRT INT8 (entropy calibrator, symmetric)", "entropy", activations_symmetric=True,
    differs=("IInt8EntropyCalibrator2's KL search over TensorRT's own histogram is reproduced by ONNX Runtime's "
             "entropy calibrator (its own histogram and bins)",
             "TensorRT keeps INT8 between fused INT8 layers and may run a layer in FP16 when that is faster; "
             "the emulation quantises every input ONNX Runtime quantises and dequantises to FP16 between layers"))
FP16_DIFFERS = ("TensorRT may accumulate some FP16 layers in FP16 (tactic choice); the emulation accumulates in FP32 "
                "and rounds each layer's output to FP16",)

TIMING_CACHE = "timing.cache"
CALIBRATION_CACHE = "calibration.cache"


def engine_path(out: Path, target: Target) -> Path:
    return out / f"centerface.{target.precision}.engine"


class TensorRTBackend(Backend):
    name = "tensorrt"
    accelerator = "GPU"
    section_keys = TensorRTSettings.KEYS
    own_quantiser = "entropy"  # IInt8EntropyCalibrator2 over the calibration set, at the deployed shape

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed here (the t4 targets run in their image: make target=t4)"
        from toolkit.backends.tensorrt import cuda

        try:
            if cuda.device_count() == 0:
                return "no NVIDIA GPU visible (CUDA reports 0 devices)"
        except Unavailable as exc:
            return exc.message
        return None

    def version(self) -> str | None:
        return machine.package_version("tensorrt")

    def checks(self) -> list[Check]:
        version = self.version()
        trt_tool = shutil.which("trtexec")
        return [Check("python: tensorrt", version is not None, version or "not installed (T4 targets run in their image)"),
                Check("GPU", *_gpu()),
                Check("tool: trtexec", trt_tool is not None, trt_tool or "not found")]

    def convert(self, onnx_path: Path, target: Target, workdir: Path, calibrator=None) -> Path:
        """The engine for this GPU: reused when built here from the same ONNX and settings, else built."""
        from toolkit.backends.tensorrt import engine

        s = TensorRTSettings.of(target)
        path = engine_path(workdir, target)
        if engine.reusable(path, onnx_path, s, engine.current(s.device_id)):
            return path
        if s.precision == "int8" and calibrator is None:
            raise Unavailable(f"target {target.name}: INT8 engines are built by the convert stage with the calibration set")
        engine.build(onnx_path, path, s, workdir / TIMING_CACHE, lambda m: print(m, file=sys.stderr), calibrator)
        return path

    def quantise(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
        """INT8 with the entropy calibrator over the calibration set at the deployed shape; the
        calibration cache is kept in the run folder and reused by later builds."""
        from toolkit.backends.tensorrt.calibrator import Feeder, entropy_calibrator

        s = TensorRTSettings.of(target)
        feeder = Feeder(calib, calib.manifest["recipe"]["batch_size"], s.shape(1)[1:])
        log(f"TensorRT entropy calibration: {feeder.batches} batches of {feeder.batch}"
            + (f", {feeder.left_out} images left out (not a full batch)" if feeder.left_out else ""))
        cache = out / CALIBRATION_CACHE
        artefact = self.convert(onnx_path, target, out, entropy_calibrator(feeder, cache))
        return artefact, {"method": "entropy", "set_sha256": calib.sha256, "images": len(calib.manifest["images"]),
                          "excluded_from_evaluation": True, "cache": CALIBRATION_CACHE}

    def runner(self, artefact: Path, target: Target) -> Runner:
        from toolkit.backends.tensorrt import cuda
        from toolkit.backends.tensorrt.runner import TensorRTRunner

        s = TensorRTSettings.of(target)
        ids = chosen_devices(target, s.device_id, lambda: list(range(cuda.device_count())), "GPU")
        return pool_over(ids, lambda i: TensorRTRunner(artefact, s, i), "GPU")

    def emulate(self, onnx_path: Path, target: Target, calib: CalibrationSet | None, out: Path,
                log: Callable[[str], None]) -> tuple[list[Path], dict]:
        s = TensorRTSettings.of(target)
        scheme = replace(INT8_SCHEME, keep_fp16=s.keep_fp16) if s.precision == "int8" else None
        log(f"emulating {target.name}: TensorRT {s.precision} numerics in ONNX Runtime on the CPU")
        models = emulation.build(onnx_path, out, s.precision, list(s.sizes), scheme, calib)
        return models, emulation.record(s.precision, scheme, list(s.sizes), "NVIDIA GPU, TensorRT",
                                        () if scheme else FP16_DIFFERS)

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict[str, ToolFigures] | None:
        """trtexec as the guide ran it, per batch size (with buckets: per size too; the headline is the
        largest size's), when trtexec is here."""
        tool = shutil.which("trtexec")
        if tool is None:
            return None
        s = TensorRTSettings.of(target)
        figures = {}
        for bs in target.batch_sizes:
            per_size = {}
            for width, height in s.sizes:
                line = trtexec.command(out / "centerface.onnx", bs, height, width, s.precision,
                                       out / CALIBRATION_CACHE if s.precision == "int8" else None, tool)
                proc = subprocess.run(line, capture_output=True, text=True)
                if proc.returncode:
                    raise ToolkitError(f"trtexec failed (exit {proc.returncode}): {' '.join(line)}",
                                       "\n".join(proc.stdout.splitlines()[-15:]))
                found = trtexec.parse(proc.stdout, bs, "trtexec")
                found.details["command"] = line
                per_size[f"{width}x{height}"] = found
            figures[str(bs)] = found  # the largest size, the last
            if len(per_size) > 1:
                found.details["per_size"] = {k: f.as_dict() for k, f in per_size.items()}
        return figures

    def dry_run(self, target: Target, out: Path, shown: Path | None = None) -> list[Step]:
        from toolkit.backends.tensorrt.engine import describe_profiles

        s = TensorRTSettings.of(target)
        out = shown or out
        onnx = out / "centerface.onnx"
        steps = [Step("export (host, PyTorch)", None, [str(onnx)])]
        if s.precision == "int8":
            held = f", layers held in FP16: {' '.join(s.keep_fp16)}" if s.keep_fp16 else ""
            steps.append(Step(f"entropy calibration over calibration/{target.extra['calibration']['recipe']}.toml "
                              f"at {s.width}x{s.height}{held}", None, [str(out / CALIBRATION_CACHE)]))
        steps += [
            Step(f"{s.precision} engine (TensorRT Python API), {describe_profiles(s)}, workspace {s.workspace_mb} MB",
                 None, [str(engine_path(out, target)), str(engine_path(out, target).with_suffix(".json")),
                        str(out / TIMING_CACHE)]),
            Step(f"inference over the dataset (TensorRT runner, batch {target.batch_sizes[0]})", None,
                 [str(out / "predictions"), str(out / "outputs.npz")]),
            *[Step(f"trtexec reference, batch {bs}, {w}x{h}", trtexec.command(
                onnx, bs, h, w, s.precision, out / CALIBRATION_CACHE if s.precision == "int8" else None),
                ["result.json: tool_throughput"]) for bs in target.batch_sizes for w, h in s.sizes],
            Step("WIDER FACE AP, result.json", None, [str(out / "result.json")]),
        ]
        return steps


def _gpu() -> tuple[bool, str]:
    """An NVIDIA GPU and its driver, as nvidia-smi reports them."""
    if not shutil.which("nvidia-smi"):
        return False, "nvidia-smi not found"
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stdout.strip() or proc.stderr.strip())[:80]

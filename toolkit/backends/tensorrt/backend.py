"""The TensorRT backend: strongly typed engines (TensorRT 10 and 11) from a typed ONNX that the toolkit
writes (FP16, or INT8 Q/DQ with FP16 float parts), a stream runner, trtexec on the same typed ONNX."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from toolkit import machine
from toolkit.backends import emulation, equalise
from toolkit.backends.base import Backend, Check, Emulation, Runner, Step, ToolFigures
from toolkit.backends.emulation import Int8Scheme
from toolkit.backends.pool import chosen_devices, pool_over
from toolkit.backends.sized import static_per_size
from toolkit.backends.tensorrt import majors, trtexec, typed
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.errors import ToolkitError, Unavailable
from toolkit.model.weights import sha256
from toolkit.calibration import CalibrationSet
from toolkit.target import Target

# TensorRT's explicit quantization as its placement rules want it (typed.qdq_placement checks them): Q/DQ
# on the inputs of the weighted layers only (Conv, ConvTranspose: each pair fuses into its layer), INT8
# only (biases stay float), symmetric per-tensor activations, symmetric per-channel weights; the held
# layers stay FP16. Calibrated by NNCF (its ranges; nncf_quant), on the model with its depthwise inputs
# equalised where the target's file asks (`[calibration] equalise_depthwise`; one scale per tensor must serve
# channels of very different ranges): t4-int8 with nothing held loses -0.03 / -0.01 / +0.00 AP points on the
# selection half, -1.79 / -1.15 / -0.49 unequalised, where ONNX Runtime's entropy calibration lost -2.13 / -1.98 /
# -2.50 (docs/results.md).
INT8_SCHEME = Int8Scheme(
    "TensorRT INT8, explicit quantization (NNCF calibration, symmetric)", "nncf", activations_symmetric=True,
    quantised_ops=("Conv", "ConvTranspose"), int32_bias=False,
    differs=("TensorRT computes a quantised layer with INT8 inputs and INT32 accumulation, as the emulation's "
             "FP32 arithmetic on the dequantised values does up to rounding; its FP16 layers may accumulate in FP16",))
FP16_DIFFERS = ("TensorRT may accumulate some FP16 layers in FP16 (tactic choice); the emulation accumulates in FP32 "
                "and rounds each layer's output to FP16",)

TIMING_CACHE = "timing.cache"


def int8_scheme(target: Target) -> Int8Scheme:
    """INT8_SCHEME as the target's file asks: its layers held in FP16, its depthwise inputs equalised or not."""
    return replace(INT8_SCHEME.held(TensorRTSettings.of(target).keep_fp16), equalise_depthwise=equalise.wanted(target))


def engine_path(out: Path, target: Target) -> Path:
    return out / f"centerface.{target.precision}.engine"


def typed_path(out: Path, target: Target) -> Path:
    """The strongly typed ONNX the engine is built from (and `--mode emulate` evaluates)."""
    return out / f"centerface.{target.precision}.typed.onnx"


class TensorRTBackend(Backend):
    name = "tensorrt"
    accelerator = "GPU"
    triton_platform = "tensorrt_plan"
    section_schema = TensorRTSettings.SCHEMA
    own_quantiser = INT8_SCHEME.method  # Q/DQ calibrated over the calibration set at the deployed shape, then typed

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed here (the t4 targets run in their image: make target=t4)"
        try:
            majors.major_of(self.version() or "unknown")
        except Unavailable as exc:
            return exc.message
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
                Check("TensorRT major", *_supported(version)),
                Check("GPU", *_gpu()),
                Check("tool: trtexec", trt_tool is not None, trt_tool or "not found")]

    def deployed_model(self, out: Path, target: Target) -> Path:
        return typed_path(out, target)

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """FP16: the typed FP16 ONNX, then its engine (reused when built here from the same file)."""
        if target.precision == "int8":
            raise Unavailable(f"target {target.name}: INT8 engines are built by the convert stage with the calibration set")
        typed.fp16_model(onnx_path, typed_path(workdir, target))
        return self._engine(target, workdir)

    def _engine(self, target: Target, out: Path) -> Path:
        from toolkit.backends.tensorrt import engine

        s = TensorRTSettings.of(target)
        path, onnx = engine_path(out, target), typed_path(out, target)
        if not engine.reusable(path, onnx, s, engine.current(s.device_id)):
            engine.build(onnx, path, s, out / TIMING_CACHE, lambda m: print(m, file=sys.stderr))
        return path

    def _typed_int8(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path) -> dict:
        """Calibrate the Q/DQ model (INT8_SCHEME, the target's held blocks unquantised), then type it."""
        qdq = emulation.calibrated_qdq(onnx_path, out / "centerface.int8.qdq.onnx", calib, int8_scheme(target),
                                        out / "calibration" / "cache")
        done = typed.fp16_model(qdq, typed_path(out, target))
        qdq.unlink()
        return done

    def quantise(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
        """INT8: explicit quantization (Q/DQ in the typed ONNX) calibrated at the deployed shape; no
        calibrator and no calibration cache: the scales are in the file."""
        log(f"TensorRT INT8: Q/DQ calibration over {len(calib.manifest['images'])} images ({int8_scheme(target).describe()})")
        typing = self._typed_int8(onnx_path, target, calib, out)
        return self._engine(target, out), {"method": INT8_SCHEME.method, "set_sha256": calib.sha256, "typed": typing,
                                           "images": len(calib.manifest["images"]), "excluded_from_evaluation": True}

    def qdq_twin(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path) -> Path:
        return emulation.calibrated_qdq(onnx_path, out / "centerface.int8.twin.onnx", calib,
                                        int8_scheme(target).held(()), out / "calibration" / "cache")  # the deployed ranges

    def float_setting(self, names: list[str]) -> dict:
        return {"keep_fp16": list(names)}  # left unquantised: FP16 in the typed file

    def runner(self, artefact: Path, target: Target) -> Runner:
        from toolkit.backends.tensorrt import cuda
        from toolkit.backends.tensorrt.runner import TensorRTRunner

        s = TensorRTSettings.of(target)
        ids = chosen_devices(target, s.device_id, lambda: list(range(cuda.device_count())), "GPU")
        return pool_over(ids, lambda i: TensorRTRunner(artefact, s, i), "GPU")

    @property
    def emulation(self) -> Emulation:
        return Emulation(self._emulate)

    def _emulate(self, onnx_path: Path, target: Target, calib: CalibrationSet | None, out: Path,
                 log: Callable[[str], None]) -> tuple[list[Path], dict]:
        """The deployed typed ONNX, made exactly as `convert` / `quantise` make it, upcast for the CPU."""
        s = TensorRTSettings.of(target)
        log(f"emulating {target.name}: the {s.precision} typed ONNX TensorRT builds, in ONNX Runtime on the CPU")
        if s.precision == "int8":
            if calib is None:
                raise Unavailable(f"target {target.name}: INT8 emulation needs the target's calibration set")
            typing = self._typed_int8(onnx_path, target, calib, out)
        else:
            typing = typed.fp16_model(onnx_path, typed_path(out, target))
        deployed = typed_path(out, target)
        main = typed.upcast(deployed, out / f"{emulation.EMULATED}.onnx")
        models = static_per_size(main, out, emulation.EMULATED, list(s.sizes))
        scheme = int8_scheme(target) if s.precision == "int8" else None
        record = emulation.record(s.precision, scheme, list(s.sizes), "NVIDIA GPU, TensorRT", () if scheme else FP16_DIFFERS)
        return models, {**record, "typed": typing, "emulates": {"file": deployed.name, "sha256": sha256(deployed)}}

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict[str, ToolFigures] | None:
        """trtexec on the typed ONNX the engine was built from, per batch size (with buckets: per size
        too; the headline is the largest size's), when trtexec is here."""
        tool = shutil.which("trtexec")
        if tool is None:
            return None
        version = self.version() or "unknown"
        major = majors.major_of(version)
        s = TensorRTSettings.of(target)
        figures = {}
        for bs in target.batch_sizes:
            per_size = {}
            for width, height in s.sizes:
                line = trtexec.command(typed_path(out, target), bs, height, width, major, tool)
                proc = subprocess.run(line, capture_output=True, text=True)
                if proc.returncode:
                    raise ToolkitError(f"trtexec failed (exit {proc.returncode}): {' '.join(line)}",
                                       "\n".join(proc.stdout.splitlines()[-15:]))
                found = trtexec.parse(proc.stdout, bs, "trtexec")
                found.details.update(command=line, tensorrt=version)
                per_size[f"{width}x{height}"] = found
            figures[str(bs)] = found  # the largest size, the last
            if len(per_size) > 1:
                found.details["per_size"] = {k: f.as_dict() for k, f in per_size.items()}
        return figures

    def dry_run(self, target: Target, out: Path, shown: Path | None = None) -> list[Step]:
        from toolkit.backends.tensorrt.engine import describe_profiles

        s = TensorRTSettings.of(target)
        out = shown or out
        deployed = typed_path(out, target)
        major = majors.MAJORS[majors.IMAGE_DEFAULT]
        steps = [Step("export (host, PyTorch)", None, [str(out / "centerface.onnx")])]
        if s.precision == "int8":
            held = f", held in FP16 (not quantised): {' '.join(s.keep_fp16)}" if s.keep_fp16 else ""
            steps.append(Step(f"Q/DQ calibration ({int8_scheme(target).held(()).describe()}) over calibration/"
                              f"{target.extra['calibration']['recipe']}.toml at {s.width}x{s.height}{held}", None, []))
        steps += [
            Step(f"typed {s.precision} ONNX (onnxconverter-common float16, FP32 I/O"
                 f"{f', Q/DQ at opset {typed.QDQ_OPSET}' if s.precision == 'int8' else ''})", None, [str(deployed)]),
            Step(f"strongly typed engine (TensorRT Python API, no precision flags), {describe_profiles(s)}, "
                 f"workspace {s.workspace_mb} MB", None,
                 [str(engine_path(out, target)), str(engine_path(out, target).with_suffix(".json")), str(out / TIMING_CACHE)]),
            Step(f"inference over the dataset (TensorRT runner, batch {target.batch_sizes[0]})", None,
                 [str(out / "predictions"), str(out / "outputs.npz")]),
            *[Step(f"trtexec reference (TensorRT {major.number}), batch {bs}, {w}x{h}",
                   trtexec.command(deployed, bs, h, w, major), ["result.json: tool_throughput"])
              for bs in target.batch_sizes for w, h in s.sizes],
            Step("WIDER FACE AP, result.json", None, [str(out / "result.json")]),
        ]
        return steps


def _supported(version: str | None) -> tuple[bool, str]:
    if version is None:
        return False, f"no TensorRT here; the toolkit supports TensorRT {' and '.join(map(str, majors.MAJORS))}"
    try:
        return True, f"TensorRT {majors.major_of(version).number}: supported (strongly typed builds)"
    except Unavailable as exc:
        return False, exc.message


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

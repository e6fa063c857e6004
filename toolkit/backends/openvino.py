"""OpenVINO on the CPU (the optional [openvino] extra): FP32, BF16 where the CPU has it, and the INT8 Q/DQ
model of the toolkit's calibration sweep. The precision in force is read back from the compiled model,
never assumed; streams and threads come from OpenVINO's THROUGHPUT / LATENCY hint, and the runner offers
as many streams as the compiled model's optimal infer requests."""

from __future__ import annotations

import functools
import os
import queue
import tempfile
from pathlib import Path

import numpy as np

from toolkit import schema
from toolkit.backends import nncf_quant
from toolkit.backends.base import Backend, Check, Runner, RunnerInfo
from toolkit.calibration import CalibrationSet
from toolkit.data.preprocess import NCHW_F32
from toolkit.errors import InputError
from toolkit.machine import usable_cores
from toolkit.model.signature import OUTPUT_NAMES
from toolkit.target import Target

HINTS = ("throughput", "latency")
CACHE = "openvino_cache"  # compiled models, beside the model: OpenVINO writes new files there, never edits one
QUANTISED_OPS = ("Conv", "ConvTranspose")
BF16_CAPABILITY = "BF16"  # in the CPU plugin's OPTIMIZATION_CAPABILITIES: AVX512_BF16 or AMX


def float_precision(target: Target, cpu_has_bf16: bool) -> str:
    """The INFERENCE_PRECISION_HINT a target asks: fp32 f32, bf16 bf16, int8 its float parts in bf16 where
    the CPU has it (else f32)."""
    if target.precision == "bf16" or (target.precision == "int8" and cpu_has_bf16):
        return "bf16"
    return "f32"


@functools.cache
def _cpu_capabilities() -> tuple[str, ...]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (asked once: `targets` and `doctor` ask for every target)."""
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend(Backend):
    name = "openvino"
    section_schema = {"hint": schema.TEXT}
    # ONNX Runtime's static QDQ, and NNCF's post-training quantisation (its ONNX backend: Q/DQ, fast bias
    # correction), both run here by OpenVINO
    sweep_methods = ("minmax", "entropy", "percentile", "nncf")

    def unavailable(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "OpenVINO is not installed (pip install -e '.[openvino]')"
        return None

    def unavailable_for(self, target: Target) -> str | None:
        reason = self.unavailable()
        if reason is None and target.precision == "bf16" and BF16_CAPABILITY not in _cpu_capabilities():
            return (f"target {target.name}: this CPU has no BF16 (AVX512_BF16 or AMX; OpenVINO lists "
                    f"{', '.join(_cpu_capabilities())}): run openvino (FP32) or openvino-int8")
        return reason

    def version(self) -> str | None:
        try:
            import openvino
        except ImportError:
            return None
        return openvino.__version__.split("-")[0]

    def checks(self) -> list[Check]:
        reason = self.unavailable()
        if reason:
            return [Check(f"backend {self.name}", False, reason)]
        return [Check(f"backend {self.name}", True, f"version {self.version()}, CPU capabilities "
                                                    f"{', '.join(_cpu_capabilities())}")]

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """OpenVINO's IR of the export (centerface.xml + centerface.bin, weights kept FP32: the precision
        is the compiled model's), both written to a temporary folder and renamed into place."""
        import openvino as ov

        xml = workdir / f"centerface.{target.name}.xml"
        with tempfile.TemporaryDirectory(dir=workdir, prefix=".ir-") as tmp:
            made = Path(tmp) / xml.name
            ov.save_model(ov.convert_model(str(onnx_path)), str(made), compress_to_fp16=False)
            os.replace(made.with_suffix(".bin"), xml.with_suffix(".bin"))
            os.replace(made, xml)
        return xml

    def calibrate(self, onnx_path: Path, calib: CalibrationSet, target: Target, out: Path, method: str,
                  keep_float: list[str]) -> Path:
        """ONNX Runtime's static QDQ quantisation (ort_quant), the file OpenVINO then runs: Q/DQ on the inputs
        of the convolutions only and biases in float, the placement OpenVINO fuses whole (ONNX Runtime's
        default, with Q/DQ on every op's output, runs slower here: docs/results.md, "OpenVINO INT8")."""
        from toolkit.backends.ort_quant import quantize

        if method == "nncf":
            return nncf_quant.quantize(onnx_path, calib, keep_float, out)
        return quantize(onnx_path, calib, method, keep_float, out, out.parent / "cache",
                        op_types=QUANTISED_OPS, int32_bias=False)

    def runner(self, artefact: Path, target: Target) -> Runner:
        if target.device_ids is not None:
            raise InputError(f"target {target.name}: --device-ids picks chips or GPUs; OpenVINO lays out the "
                             "CPU's cores by its hint")
        hint = target.extra.get("openvino", {}).get("hint", "throughput")
        if hint not in HINTS:
            raise InputError(f"target {target.name} [openvino]: hint {hint!r} is not one of {', '.join(HINTS)}")
        return OpenVinoRunner(artefact, float_precision(target, BF16_CAPABILITY in _cpu_capabilities()), hint,
                              artefact.parent / CACHE)


class OpenVinoRunner(Runner):
    """A compiled model and its optimal number of infer requests, one stream each."""

    name = "openvino"

    def __init__(self, model: Path, precision: str, hint: str, cache_dir: Path | None = None) -> None:
        import openvino as ov

        self.source, self._tensor = str(model), ov.Tensor
        config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": precision}
        if cache_dir is not None:
            cache_dir.mkdir(exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        try:
            self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        except RuntimeError as exc:
            raise InputError(f"{model}: OpenVINO cannot compile it ({str(exc).strip().splitlines()[0][:160]})") from None
        names = [o.get_any_name() for o in self.compiled.outputs]
        if len(self.compiled.inputs) != 1 or sorted(names) != sorted(OUTPUT_NAMES):
            raise InputError(f"{model}: expected 1 input and the outputs {', '.join(OUTPUT_NAMES)} (a CenterFace model)")
        self.hint, self.version = hint, ov.__version__.split("-")[0]
        self.requests = [self.compiled.create_infer_request()
                         for _ in range(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))]
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(len(self.requests)):
            self._free.put(i)
        shape = self.compiled.input(0).get_partial_shape()
        batch, _, height, width = (d.get_length() if d.is_static else None for d in shape)
        self.info = RunnerInfo(NCHW_F32, (height, width) if height and width else None,
                               (batch, batch) if batch else (1, None), len(self.requests), usable_cores())

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        i = self._free.get()
        try:
            # the batch as a tensor of its own, shared, never written into the request's: two requests asking
            # for their input tensors at once (dynamic shapes) hang OpenVINO 2026.4's Python API
            found = self.requests[i].infer({0: self._tensor(batch, shared_memory=True)})
        finally:
            self._free.put(i)
        return {o.get_any_name(): np.asarray(v) for o, v in found.items()}

    def reported(self) -> dict:
        c = self.compiled
        return {"runtime": f"openvino {self.version}", "hint": self.hint,
                "precision_in_force": c.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "infer_requests": len(self.requests), "streams": int(c.get_property("NUM_STREAMS")),
                "threads": int(c.get_property("INFERENCE_NUM_THREADS"))}

    def _release(self) -> None:
        self.requests, self.compiled = [], None

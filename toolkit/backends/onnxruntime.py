"""ONNX Runtime on the CPU: the reference target that runs anywhere."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import fileio, schema
from toolkit.backends import equalise
from toolkit.backends.base import Backend, Runner, RunnerInfo
from toolkit.backends.pool import pool_over
from toolkit.backends.sized import SizedRunner, static_per_size
from toolkit.data.preprocess import NCHW_F32
from toolkit.machine import usable_cores
from toolkit.errors import DeviceError, InputError
from toolkit.model.signature import OUTPUT_NAMES
from toolkit.calibration import CalibrationSet
from toolkit.target import Target


MAX_SHARED_STREAMS = 4
LAYOUTS = ("throughput", "latency")


@dataclass(frozen=True)
class Layout:
    """How the cores are spent: `sessions` separate sessions, each serving `streams` concurrent calls
    with `threads` intra-op threads a call."""

    sessions: int
    streams: int
    threads: int


def cpu_layout(cores: int, goal: str = "throughput") -> Layout:
    """The layout for `cores`, chosen on `bench --target cpu --batch-sizes 1` (pure inference, 800x800) per
    layout; the figures are in docs/results.md ("CPU layout"):

    - latency: one call over every core (lowest p50, a little less throughput);
    - throughput, up to 4 cores: one session, one single-threaded stream a core;
    - throughput, more cores: separate two-threaded sessions. Separate sessions share no thread pool, so
      no call waits for another's straggling thread.
    """
    if goal not in LAYOUTS:
        raise InputError(f"CPU layout {goal!r}: choose from {', '.join(LAYOUTS)}")
    if goal == "latency" or cores == 1:
        return Layout(1, 1, cores)
    if cores <= MAX_SHARED_STREAMS:
        return Layout(1, cores, 1)
    return Layout(cores // 2, 1, 2)


OPTIMISATION = {"all": "ORT_ENABLE_ALL", "basic": "ORT_ENABLE_BASIC"}


def session_options(threads: int | None = None, optimisation: str = "all"):
    """`optimisation` basic keeps numerics-bearing nodes (an emulated model's FP16 Cast pairs) as they are."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMISATION[optimisation])
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or usable_cores()
    opts.inter_op_num_threads = 1
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning, leaving the cores to the pipeline's
    # decode / preprocess / post-process threads.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@functools.cache
def _register_shared_arena() -> None:
    """One CPU arena for every session that asks for it (registered once per process)."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model: Path | bytes, threads: int | None = None, optimisation: str = "all",
                 shared_arena: bool = False, streams: int = 1) -> None:
        """One session: `streams` concurrent calls of `threads` intra-op threads each (None: the one-
        session throughput layout of this machine's cores). `shared_arena`: the process's one CPU arena,
        for one session of several (a bucket each), whose own arenas would each keep their peak (tens of GB
        at batch 16 with six buckets)."""
        import onnxruntime as ort

        if threads is None:
            layout = cpu_layout(usable_cores())
            streams, threads = layout.sessions * layout.streams, layout.threads
        self.source = "model bytes" if isinstance(model, bytes) else str(model)
        opts = session_options(threads, optimisation)
        if shared_arena:
            _register_shared_arena()
            opts.add_session_config_entry("session.use_env_allocators", "1")
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{self.source}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:160]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(self.session.get_outputs()) != len(OUTPUT_NAMES):
            raise InputError(f"{self.source}: expected 1 input and {len(OUTPUT_NAMES)} outputs (a CenterFace model)")
        self.input = inputs[0]
        self.output_names = [o.name for o in self.session.get_outputs()]
        batch, _, height, width = (d if isinstance(d, int) and d > 0 else None for d in self.input.shape)
        self.info = RunnerInfo(NCHW_F32, (height, width) if height and width else None,
                               (batch, batch) if batch else (1, None), streams, streams * threads)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return dict(zip(OUTPUT_NAMES, self.session.run(self.output_names, {self.input.name: batch})))
        except Exception as exc:  # a failure on a checked input (memory, the model's own limits): the whole cause
            raise DeviceError(f"{self.source}: ONNX Runtime failed on a {tuple(batch.shape)} input "
                              f"({' '.join(str(exc).split())})") from None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    sweep_methods = ("minmax", "entropy", "percentile")
    section_schema = {"layout": schema.TEXT}

    def unavailable(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def version(self) -> str | None:
        try:
            import onnxruntime
        except ImportError:
            return None
        return onnxruntime.__version__

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """Apply ONNX Runtime's graph optimisations offline and keep the optimised model; with buckets,
        one static copy of the export per bucket too (batch dynamic), as fixed-shape chips take them."""
        import onnxruntime as ort

        out = workdir / f"centerface.{target.name}.ort.onnx"

        def write(tmp: Path) -> None:
            opts = session_options()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

        if target.preprocess.mode == "buckets":
            static_per_size(onnx_path, workdir, _bucket_stem(target), target.preprocess.sizes())
        return fileio.write_with(out, write)

    def calibrate(self, onnx_path: Path, calib: CalibrationSet, target: Target, out: Path, method: str,
                  keep_float: list[str]) -> Path:
        """Static QDQ quantisation (see ort_quant); ranges cached beside `out`. `equalise_depthwise` in the target's
        [calibration] table equalises the depthwise convolutions' inputs first."""
        from toolkit.backends.ort_quant import quantize

        return quantize(onnx_path, calib, method, keep_float, out, out.parent / "cache", equalise=equalise.wanted(target))

    def runner(self, artefact: Path, target: Target) -> Runner:
        if target.device_ids is not None:
            raise InputError(f"target {target.name}: --device-ids picks chips or GPUs; the CPU's cores are laid out "
                             "by the target (cpu-latency: one stream over every core)")
        if target.preprocess.mode != "buckets" or target.precision == "int8":
            return layout_runner(artefact, cpu_layout(usable_cores(), target.extra.get("onnxruntime", {}).get(
                "layout", "throughput")))
        return SizedRunner({(h, w): OnnxRuntimeRunner(artefact.parent / f"{_bucket_stem(target)}.{w}x{h}.onnx",
                                                      shared_arena=True) for w, h in target.preprocess.sizes()}, self.name)


def layout_runner(model: Path, layout: Layout) -> Runner:
    """A runner of `layout`: one session, or a pool of separate sessions (counted per session)."""
    if layout.sessions == 1:
        return OnnxRuntimeRunner(model, layout.threads, streams=layout.streams)
    return pool_over(list(range(layout.sessions)), lambda _: OnnxRuntimeRunner(model, layout.threads,
                                                                               streams=layout.streams), "cpu session")


def _bucket_stem(target: Target) -> str:
    return f"centerface.{target.name}"

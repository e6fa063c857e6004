"""The Ascend backend: static ONNX + atc per batch size (AIPP on 310P), AMCT INT8, ais_bench inference."""

from __future__ import annotations

import glob
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from toolkit import calibration, fileio, reading
from toolkit.backends.ascend import aipp, bins, commands, perf, plan, toolflow
from toolkit.backends.ascend.cann import SET_ENV, Cann
from toolkit.backends.ascend.settings import SOCS, AscendSettings
from toolkit.backends import emulation, equalise
from toolkit.backends.base import Backend, Check, Emulation, Runner, RunnerInfo, Step, ToolFigures, batch_hw
from toolkit.backends.pool import chosen_devices, pool_over
from toolkit.data.preprocess import NCHW_F32, NHWC_U8
from toolkit.backends.emulation import Int8Scheme
from toolkit.backends.sized import static_per_size
from toolkit.errors import InputError, ToolkitError, Unavailable
from toolkit.model.signature import OUTPUT_NAMES
from toolkit.model.static import make_static
from toolkit.calibration import CalibrationSet
from toolkit.target import Target

# AMCT's default post-training scheme: activations with an offset (asymmetric), per tensor, clipped by IFMR's
# search; weights symmetric per channel (ARQ); atc runs the rest in FP16. Without AMCT, ONNX Runtime's twin, with
# Q/DQ where AMCT's fake_quant model has it: on the inputs (and weights) of the layer types it quantises, never
# on their outputs (tests/data/ascend/amct_ptq_layers.json), so a skipped layer reads float.
AMCT_TWIN = Int8Scheme(
    "AMCT twin (ONNX Runtime QDQ)", "percentile", activations_symmetric=False,
    quantised_ops=("Conv", "ConvTranspose", "Add"),
    differs=("AMCT's IFMR clip search (max/min percentile 0.999999, scale search 0.7..1.3) is replaced by ONNX "
             "Runtime's percentile calibration (99.999th percentile)",
             "AMCT's ARQ weight scales are reproduced as symmetric per-channel max scaling"))
FP16_DIFFERS = ("the AI Core's FP16 arithmetic inside a layer (its accumulation order) is FP32 here; each layer's "
                "output is rounded to FP16 as the chip stores it",)
LOG_TAIL = 20
BENCHMARK_IMAGES = 64  # real inputs for the older benchmark tool's throughput run
# What the runner calls of ais_bench's InferSession (tests/data/ascend/ais_bench_interface.json records the
# real signatures at a pinned commit, and the tests check every call against it).
INFER_SESSION_API = ("get_inputs", "infer", "run", "set_dynamic_hw", "free_resource")


def run_tool(command: list[str], cwd: Path | None = None) -> str:
    """Run a CANN command; on failure, one line naming it plus its last output lines."""
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise Unavailable(f"{command[0]} not found", f"source {SET_ENV}") from None
    if proc.returncode:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-LOG_TAIL:]
        raise ToolkitError(f"{command[0]} failed (exit {proc.returncode}): {' '.join(command)}", "\n".join(tail))
    return proc.stdout


class AscendBackend(Backend):
    name = "ascend"
    accelerator = "NPU"
    section_schema = AscendSettings.SCHEMA
    own_quantiser = "amct"

    def unavailable(self) -> str | None:
        gaps = Cann.find().missing()
        return f"Ascend CANN missing here: {', '.join(gaps)}" if gaps else None

    def unavailable_for_int8(self) -> str | None:
        gaps = Cann.find().missing(quantise=True)
        return f"Ascend CANN missing here: {', '.join(gaps)}" if gaps else None

    def version(self) -> str | None:
        for info in glob.glob("/usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info"):
            for line in Path(info).read_text().splitlines():
                if line.startswith("version="):
                    return line.split("=", 1)[1].strip()
        return None

    def checks(self) -> list[Check]:
        cann = Cann.find()
        found = [Check("CANN set_env.sh", cann.set_env, str(SET_ENV))]
        for tool, where in (("atc", cann.atc), ("amct_onnx", cann.amct_onnx), ("npu-smi", cann.npu_smi),
                            ("benchmark (old Ascend tool)", cann.benchmark)):
            found.append(Check(f"tool: {tool}", where is not None, where or "not found"))
        found.append(Check("python: ais_bench", cann.ais_bench, "importable" if cann.ais_bench else "not installed"))
        found.append(Check("Ascend devices", bool(cann.devices), ", ".join(cann.devices) or "none"))
        version = self.version()
        takes = [soc for soc in SOCS if AscendSettings.releases_take(soc, version)]
        found.append(Check("CANN release", bool(version and takes),
                           f"{version}: {' and '.join(takes) or 'none of'} {SOCS} targets" if version else "not found"))
        return found

    def convert(self, onnx_path: Path, target: Target, workdir: Path) -> Path:
        """One .om per batch size (from AMCT's deploy model for INT8); returns the first batch size's."""
        s = AscendSettings.of(target)
        problem = s.cann_problem(self.version())
        if problem:
            raise Unavailable(f"target {target.name}: {problem}")
        int8 = target.precision == "int8"
        source = plan.deploy_model(workdir) if int8 else onnx_path
        if not source.is_file():
            raise InputError(f"{source}: missing", "INT8 targets calibrate with AMCT first (run --stages convert)")
        config = None
        if s.aipp:
            config = fileio.write_text(workdir / plan.AIPP_FILE, aipp.generate(*s.aipp_source_size))
        for bs in target.batch_sizes:
            static = make_static(source, plan.static_onnx(workdir, bs, int8), bs, *s.static_hw())
            for earlier in plan.om_files(workdir, bs):
                earlier.unlink()  # atc rewrites in place: a staged run folder's file is a link to the kept one
            run_tool(commands.atc(static, plan.om_stem(workdir, bs), bs, list(s.sizes), s.soc_version, config))
            plan.find_om(workdir, bs)  # atc exited 0 but must also have written it
        return plan.find_om(workdir, target.batch_sizes[0])

    def quantise(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
        """AMCT on the calibration set (real WIDER images at the deployed shape), then atc on its deploy
        model. AMCT's fake-quant model is the ONNX twin: its AP is known even without a chip."""
        skipped = AscendSettings.of(target).skip_layers
        written = bins.write_calibration(out / plan.CALIBRATION_DIR, calib.batches())
        batch = calib.manifest["recipe"]["batch_size"]
        log(f"AMCT calibration: {len(written)} batches of {batch} (set {calib.sha256[:16]})"
            + (f", {len(skipped)} layers left unquantised" if skipped else ""))
        for earlier in (plan.deploy_model(out), plan.fake_quant_model(out)):
            earlier.unlink(missing_ok=True)  # AMCT rewrites in place (see convert)
        work = plan.amct_prefix(out).parent.resolve()  # AMCT writes amct_log/ and a temporary folder where it runs
        work.mkdir(parents=True, exist_ok=True)
        _write_amct_config(target, out, len(written))
        source = plan.amct_source(target, onnx_path, out)
        if source != onnx_path:  # AMCT's activations take one scale per tensor, as the twin's do
            equalise.write_equalised(onnx_path, calib.batches(), source)
        run_tool(plan.amct_command(target, source.resolve(), out.resolve(), len(written)), cwd=work)
        for made in (plan.deploy_model(out), plan.fake_quant_model(out)):
            if not made.is_file():
                raise ToolkitError(f"amct_onnx wrote no {made}")
        artefact = self.convert(onnx_path, target, out)
        return artefact, {"method": "amct", "set_sha256": calib.sha256, "images": len(calib.manifest["images"]),
                          "excluded_from_evaluation": True,
                          "onnx_twin": str(plan.fake_quant_model(out).relative_to(out))}

    @property
    def emulation(self) -> Emulation:
        return Emulation(self._emulate, _emulated_input)

    def _emulate(self, onnx_path: Path, target: Target, calib: CalibrationSet | None, out: Path,
                 log: Callable[[str], None]) -> tuple[list[Path], dict]:
        """FP16 as atc stores it; INT8 from AMCT's own fake-quant model where AMCT is here, else its twin.
        An AIPP target's input goes through the generated AIPP config's emulation (emulation_runner)."""
        s = AscendSettings.of(target)
        sizes = list(s.sizes)
        if s.aipp:
            fileio.write_text(out / plan.AIPP_FILE, aipp.generate(*s.aipp_source_size))
        device = f"{s.soc_version} ({s.chips_per_card} chip{'s' if s.chips_per_card > 1 else ''} a card)"
        if target.precision == "int8" and Cann.find().amct_onnx:
            artefact, summary = self.quantise(onnx_path, target, calib, out, log)
            models = static_per_size(out / summary["onnx_twin"], out, emulation.EMULATED, sizes)
            record = emulation.record("int8", None, sizes, device)
            return models, {**record, "numerics": "AMCT's own fake-quant model", "scheme": "amct"}
        scheme = amct_twin(target) if target.precision == "int8" else None
        log(f"emulating {target.name}: {s.soc_version} {target.precision} numerics in ONNX Runtime on the CPU"
            + (", input through the AIPP config" if s.aipp else ""))
        models = emulation.build(onnx_path, out, target.precision, sizes, scheme, calib)
        differs = (FP16_DIFFERS if scheme is None else ()) + (
            ("AIPP runs on the CPU in numpy (the parsed config), before the FP16 network",) if s.aipp else ())
        return models, emulation.record(target.precision, scheme, sizes, device, differs)

    def dry_run(self, target: Target, out: Path, shown: Path | None = None) -> list[Step]:
        s = AscendSettings.of(target)
        if s.aipp:
            fileio.write_text(out / plan.AIPP_FILE, aipp.generate(*s.aipp_source_size))
        if target.precision == "int8":
            recipe = calibration.recipe_for(target)
            _write_amct_config(target, out, -(-recipe.count // recipe.batch_size))
        return plan.steps(target, shown or out)

    def qdq_twin(self, onnx_path: Path, target: Target, calib: CalibrationSet, out: Path) -> Path:
        return emulation.calibrated_qdq(onnx_path, out / "centerface.int8.twin.onnx", calib, amct_twin(target).held(()),
                                        out / "calibration" / "cache")  # AMCT's scheme in standard Q/DQ

    def float_setting(self, names: list[str]) -> dict:
        return {"skip_layers": list(names)}  # AMCT's own: left unquantised, FP16 on the chip

    def runner(self, artefact: Path, target: Target) -> Runner:
        """One InferSession per chip: the target file's device_id, --device-ids, or every chip (`all`)."""
        s = AscendSettings.of(target)
        ids = chosen_devices(target, s.device_id, Cann.chips, "Ascend chip")
        return pool_over(ids, lambda chip: AisBenchRunner(artefact, s, chip), "npu")

    def measure(self, target: Target, out: Path, items: list[tuple[str, Path]]) -> dict[str, ToolFigures]:
        """The tool's own throughput per batch size, chip and card: ais_bench `--loop 20`, or the older
        benchmark tool over the first images as .bin files (its perf_vision_*.txt)."""
        s = AscendSettings.of(target)
        cann = Cann.find()
        figures = {}
        for bs in target.batch_sizes:
            om = plan.find_om(out, bs)
            if cann.ais_bench:  # per gear (the headline: the largest, the last), as trtexec per size
                per_gear = {}
                for gear, (h, w) in plan.perf_gears(s):
                    name = plan.perf_dirname(bs, gear)
                    run_tool(commands.ais_bench(om, out / plan.TOOL_OUTPUT, name, bs, s.device_id, loop=20, gear=gear))
                    per_gear[f"{w}x{h}"] = perf.from_ais_bench(out / plan.TOOL_OUTPUT / f"{name}_summary.json",
                                                               s.chips_per_card)
                figures[str(bs)] = list(per_gear.values())[-1]
                if len(per_gear) > 1:
                    figures[str(bs)].details["per_gear"] = {k: f.as_dict() for k, f in per_gear.items()}
                continue
            folder = out / "input_images"
            toolflow.write_images(items[:BENCHMARK_IMAGES], target.preprocess, s.aipp, folder)
            run_tool(commands.benchmark(om, toolflow.info_path(folder), bs, s.height, s.width, s.device_id,
                                        cann.benchmark), cwd=out)
            figures[str(bs)] = perf.from_benchmark(
                out / "result" / f"perf_vision_batchsize_{bs}_device_{s.device_id}.txt", s.chips_per_card)
        return figures


class AisBenchRunner(Runner):
    """One .om on one chip through ais_bench's InferSession; a batch smaller than the model's is padded.
    An AIPP .om takes the pipeline's uint8 NHWC images as they are (no float conversion on the host)."""

    name = "ais_bench"

    def __init__(self, om: Path, settings: AscendSettings, chip: int | None = None) -> None:
        try:
            from ais_bench.infer.interface import InferSession
        except ImportError:
            raise Unavailable("ais_bench is not installed (its aclruntime and ais_bench wheels)") from None
        missing = [m for m in INFER_SESSION_API if not hasattr(InferSession, m)]
        if missing:  # an old wheel: no free_resource, and gears would silently run at the static size
            raise Unavailable(f"ais_bench's InferSession has no {', '.join(missing)}: too old for the toolkit",
                              "install the current ais_bench wheels (Ascend msit benchmark)")
        chip = settings.device_id if chip is None else chip
        self.settings, self.source, self.session = settings, f"{om} (chip {chip})", None
        try:  # a session opened before a failure is freed
            self.session = InferSession(chip, str(om))
            self.padded_to = int(self.session.get_inputs()[0].shape[0])  # the .om's batch: smaller ones are padded
            self.info = RunnerInfo(NHWC_U8 if settings.aipp else NCHW_F32,
                                   None if settings.gears else (settings.height, settings.width), (1, self.padded_to))
        except BaseException:
            self.close()
            raise

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        height, width = batch_hw(batch, self.info.layout)
        if (width, height) not in self.settings.sizes:
            raise InputError(f"{self.source}: input {height}x{width} (HxW) is not one of its gears")

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = batch.shape[0]
        if n < self.padded_to:
            batch = np.concatenate([batch, np.zeros((self.padded_to - n, *batch.shape[1:]), batch.dtype)])
        feed = np.ascontiguousarray(batch)
        if self.settings.gears:
            # the gear is set before execution, from the batch's height and width in either layout (an AIPP
            # model's input reads back NHWC, which infer(mode="dymhw") refuses: "not a dymhw model!"). Height
            # first, whatever its parameters' names (w, h): ais_bench's own dymhw path passes NCHW's shape[2],
            # shape[3] there, and aclruntime checks the first against each gear's height.
            self.session.set_dynamic_hw(*batch_hw(batch, self.info.layout))
            outputs = self.session.run([feed], out_array=True)
        else:
            outputs = self.session.infer([feed], mode="static")
        return {name: np.asarray(o, np.float32)[:n] for name, o in zip(OUTPUT_NAMES, outputs)}

    def _release(self) -> None:
        if self.session is not None:
            self.session.free_resource()
            self.session = None


class AippEmulation(Runner):
    """The chip's input path on the CPU: the uint8 NHWC images an AIPP .om takes, through the AIPP config
    (parsed, emulated in numpy), into the emulated network."""

    def __init__(self, inner: Runner, config: dict) -> None:
        if inner.info.layout != NCHW_F32:
            raise InputError(f"{inner.source or inner.name}: AIPP's output is float NCHW, which this runner does not take")
        self.inner, self.config = inner, config
        self.name, self.source = f"AIPP emulation + {inner.name}", inner.source
        self.info = RunnerInfo.of_children([inner], each_stream=True, layout=NHWC_U8)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.inner.infer(np.stack([aipp.emulate(self.config, image) for image in batch]))

    def _release(self) -> None:
        self.inner.close()


def amct_twin(target: Target) -> Int8Scheme:
    """AMCT_TWIN as the target's file asks: its skipped layers held in FP16, its depthwise inputs equalised or not
    (as the model AMCT calibrates)."""
    return replace(AMCT_TWIN.held(AscendSettings.of(target).skip_layers), equalise_depthwise=equalise.wanted(target))


def _write_amct_config(target: Target, out: Path, batch_num: int) -> None:
    """AMCT's configuration file, where the target leaves layers unquantised (else none, and none left over)."""
    skipped = AscendSettings.of(target).skip_layers
    if skipped:
        fileio.write_text(plan.amct_config(out), commands.amct_config(batch_num, skipped))
    else:
        plan.amct_config(out).unlink(missing_ok=True)


def _emulated_input(out: Path, target: Target) -> Callable[[Runner], Runner] | None:
    """An AIPP target's emulation takes uint8 HWC through the generated AIPP config, as the chip does."""
    if not AscendSettings.of(target).aipp:
        return None
    config = aipp.parse(reading.read_text(out / plan.AIPP_FILE), plan.AIPP_FILE)
    return lambda inner: AippEmulation(inner, config)

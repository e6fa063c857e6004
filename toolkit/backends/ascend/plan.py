"""Every step an Ascend target takes, with its exact command line and the files it writes: what
`run --dry-run` prints and what the backend executes, so the two never drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.backends.ascend import commands
from toolkit.backends.base import Step
from toolkit.errors import InputError
from toolkit.backends.ascend.settings import AscendSettings

if TYPE_CHECKING:
    from toolkit.targets import Target

AIPP_FILE = "aipp_centerface.aippconfig"
CALIBRATION_DIR = "calibration_bin"
AMCT_DIR = "amct"
TOOL_OUTPUT = "ais_output"


def om_stem(out: Path, batch: int) -> Path:
    return out / f"centerface_bs{batch}"


def find_om(out: Path, batch: int) -> Path:
    """The .om atc wrote for `batch` (some CANN versions add _linux_<arch> to the name)."""
    stem = om_stem(out, batch)
    found = sorted(out.glob(f"{stem.name}*.om"))
    if not found:
        raise InputError(f"no {stem}.om", "run --stages convert first")
    return found[0]


def static_onnx(out: Path, batch: int, quantised: bool) -> Path:
    return out / f"centerface{'_int8' if quantised else ''}_bs{batch}.onnx"


def amct_prefix(out: Path) -> Path:
    return out / AMCT_DIR / "centerface"


def deploy_model(out: Path) -> Path:
    return Path(f"{amct_prefix(out)}_deploy_model.onnx")


def fake_quant_model(out: Path) -> Path:
    return Path(f"{amct_prefix(out)}_fake_quant_model.onnx")


def steps(target: Target, out: Path, calibration_batch: int = 16) -> list[Step]:
    s = AscendSettings.of(target)
    int8 = target.precision == "int8"
    onnx = out / "centerface.onnx"
    plan = [Step("export (host, PyTorch)", None, [str(onnx)])]
    if int8:
        plan += [
            Step(f"calibration batches from calibration/{target.extra.get('calibration', {}).get('recipe', 'ascend')}.toml",
                 None, [f"{out / CALIBRATION_DIR}/img_<k>_bs{calibration_batch}.bin (at most 10)"]),
            Step("AMCT INT8 calibration", commands.amct_calibration(
                onnx, amct_prefix(out), calibration_batch, s.height, s.width, out / CALIBRATION_DIR),
                [str(deploy_model(out)), str(fake_quant_model(out))]),
        ]
    source = deploy_model(out) if int8 else onnx
    aipp = out / AIPP_FILE if s.aipp else None
    if aipp:
        plan.append(Step("AIPP config from the model's preprocessing", None, [str(aipp)]))
    for bs in target.batch_sizes:
        plan += [
            Step(f"static ONNX from {source.name}, batch {bs}", None, [str(static_onnx(out, bs, int8))]),
            Step(f"atc, batch {bs}" + (f", gears {', '.join(f'{w}x{h}' for w, h in s.sizes)}" if s.gears else ""),
                 commands.atc(static_onnx(out, bs, int8), om_stem(out, bs), bs, list(s.sizes), s.soc_version, aipp),
                 [f"{om_stem(out, bs)}.om"]),
        ]
    bs = target.batch_sizes[0]
    plan += [
        Step(f"inference over the dataset (ais_bench InferSession, batch {bs})", None,
             [str(out / "predictions"), str(out / "outputs.npz")]),
        *[Step(f"ais_bench throughput, batch {b}", commands.ais_bench(
            Path(f"{om_stem(out, b)}.om"), out / TOOL_OUTPUT, f"perf_bs{b}", b, s.device_id, loop=20),
            [str(out / TOOL_OUTPUT / f"perf_bs{b}_summary.json")]) for b in target.batch_sizes],
        Step("WIDER FACE AP, result.json", None, [str(out / "result.json")]),
    ]
    if int8:
        plan.insert(3, Step("AP of AMCT's fake-quant model in ONNX Runtime (any machine)", None,
                            [f"{out / 'result.json'}: calibration.onnx_twin_ap"]))
    return plan

"""Every step an Ascend target takes, with its exact command line and the files it writes: what
`run --dry-run` prints and what the backend executes, so the two never drift apart."""

from __future__ import annotations

from pathlib import Path

from toolkit import calibration
from toolkit.backends import equalise
from toolkit.backends.ascend import commands
from toolkit.backends.base import Step
from toolkit.errors import InputError
from toolkit.backends.ascend.settings import AscendSettings
from toolkit.target import Target

AIPP_FILE = "aipp_centerface.aippconfig"
CALIBRATION_DIR = "calibration_bin"
AMCT_DIR = "amct"
TOOL_OUTPUT = "ais_output"


def om_stem(out: Path, batch: int) -> Path:
    return out / f"centerface_bs{batch}"


def om_files(out: Path, batch: int) -> list[Path]:
    """The .om files atc wrote for `batch`: <stem>.om, or <stem>_linux_<arch>.om as CANN versions name it
    (centerface_bs16*.om is not batch 1's: the glob takes the stem exactly)."""
    stem = om_stem(out, batch).name
    return sorted(p for p in out.glob(f"{stem}*.om") if p.name == f"{stem}.om" or p.name.startswith(f"{stem}_linux_"))


def find_om(out: Path, batch: int) -> Path:
    """The .om atc wrote for `batch`."""
    found = om_files(out, batch)
    if not found:
        raise InputError(f"no {om_stem(out, batch)}.om", "run --stages convert first")
    return found[0]


def perf_gears(s: AscendSettings) -> list[tuple[tuple[int, int] | None, tuple[int, int]]]:
    """(the --dymHW gear or None, its height and width) for each throughput run: every gear of a gear
    model, the one size of a static one."""
    return [((h, w) if s.gears else None, (h, w)) for w, h in s.sizes]


def perf_dirname(batch: int, gear: tuple[int, int] | None) -> str:
    return f"perf_bs{batch}" + (f"_{gear[0]}x{gear[1]}" if gear else "")


def static_onnx(out: Path, batch: int, quantised: bool) -> Path:
    return out / f"centerface{'_int8' if quantised else ''}_bs{batch}.onnx"


def amct_prefix(out: Path) -> Path:
    return out / AMCT_DIR / "centerface"


def deploy_model(out: Path) -> Path:
    return Path(f"{amct_prefix(out)}_deploy_model.onnx")


def fake_quant_model(out: Path) -> Path:
    return Path(f"{amct_prefix(out)}_fake_quant_model.onnx")


def equalised_model(out: Path) -> Path:
    """The FP32 model with its depthwise inputs equalised (equalise.py), which AMCT calibrates where the target asks."""
    return out / AMCT_DIR / "centerface.equalised.onnx"


def amct_source(target: Target, onnx: Path, out: Path) -> Path:
    """The model AMCT calibrates: the exported one, or its equalised twin where the target's file asks."""
    return equalised_model(out) if equalise.wanted(target) else onnx


def amct_config(out: Path) -> Path:
    """AMCT's simple configuration file, written where the target leaves layers unquantised."""
    return out / AMCT_DIR / "calibration.cfg"


def amct_command(target: Target, onnx: Path, out: Path, batch_num: int) -> list[str]:
    """AMCT's calibration of `onnx` on the batches in `out`; through its configuration file (amct_config(out))
    where the target leaves layers unquantised."""
    s, recipe = AscendSettings.of(target), calibration.recipe_for(target)
    return commands.amct_calibration(onnx, amct_prefix(out), recipe.batch_size, s.height, s.width,
                                     out / CALIBRATION_DIR, batch_num, amct_config(out) if s.skip_layers else None)


def steps(target: Target, out: Path) -> list[Step]:
    s = AscendSettings.of(target)
    int8 = target.precision == "int8"
    onnx = out / "centerface.onnx"
    plan = [Step("export (host, PyTorch)", None, [str(onnx)])]
    if int8:
        recipe = calibration.recipe_for(target)
        batches = -(-recipe.count // recipe.batch_size)
        plan.append(Step(f"calibration batches from calibration/{recipe.name}.toml ({recipe.count} images)", None,
                         [f"{out / CALIBRATION_DIR}/img_<k>_bs{recipe.batch_size}.bin (k < {batches})"]))
        if equalise.wanted(target):
            plan.append(Step("depthwise inputs equalised over the calibration images (toolkit; the same model in float)",
                             None, [str(equalised_model(out))]))
        plan += [
            Step(f"AMCT INT8 calibration, run in {amct_prefix(out).parent} (where AMCT writes amct_log/)"
                 + (f", {len(s.skip_layers)} layers left unquantised ({amct_config(out).name})" if s.skip_layers else ""),
                 amct_command(target, amct_source(target, onnx, out), out, batches),
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
        *[Step(f"ais_bench throughput, batch {b}" + (f", gear {h}x{w} (HxW)" if gear else ""), commands.ais_bench(
            Path(f"{om_stem(out, b)}.om"), out / TOOL_OUTPUT, perf_dirname(b, gear), b, s.device_id, loop=20, gear=gear),
            [str(out / TOOL_OUTPUT / f"{perf_dirname(b, gear)}_summary.json")])
          for b in target.batch_sizes for gear, (h, w) in perf_gears(s)],
        Step("WIDER FACE AP, result.json", None, [str(out / "result.json")]),
    ]
    if int8:
        plan.insert(3, Step("AP of AMCT's fake-quant model in ONNX Runtime (any machine)", None,
                            [f"{out / 'result.json'}: calibration.onnx_twin_ap"]))
    return plan

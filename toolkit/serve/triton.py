"""`export --format triton`: a Triton model repository for a target whose backend Triton serves (TensorRT: the T4).

    <out>/centerface/config.pbtxt          the ensemble: IMAGE (decoded RGB uint8 H x W x 3) in, FACES (N x 15) out
    <out>/centerface/1/                    (an ensemble's version folder is empty)
    <out>/centerface_pre/                  Python backend: the letterbox, as the toolkit's (triton_models/pre.py)
    <out>/centerface_engine/config.pbtxt   the engine: platform tensorrt_plan, dynamic batching over the profile's
    <out>/centerface_engine/1/model.onnx   batch range; the deployed typed ONNX, which build-engine.sh turns into
                                           model.plan in Triton's image (or model.plan itself, built on that GPU)
    <out>/centerface_post/                 Python backend: decode + NMS, as the toolkit's (triton_models/post.py)
    <out>/build-engine.sh, README.md

Each config.pbtxt is written here as text and checked by the tests against Triton's own model_config.proto (at a
pinned commit). No Triton server runs on this machine: the README says what was run and what was not."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from toolkit import backends, deployment, fileio, runfolder
from toolkit.chain import converted
from toolkit.containers.config import ContainerConfig
from toolkit.errors import InputError
from toolkit.model.signature import INPUT_NAME, OUTPUT_CHANNELS, OUTPUT_STRIDE
from toolkit.postprocess import NMS_IOU
from toolkit.target import Target

MODELS = Path(__file__).parent / "triton_models"
QUEUE_DELAY_US = 2000
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"


def write_repository(target: Target, run_dir: Path, out: Path, threshold: float, data: Path | None,
                     log: Callable[[str], None], progress=None) -> Path:
    """The repository for `target`'s deployment in `run_dir` (converted first where it has none: in emulation
    where the backend cannot run here, which writes the same deployed ONNX)."""
    backend = backends.get(target.backend)
    platform = backend.triton_platform
    if platform is None:
        raise InputError(f"target {target.name}: backend {backend.name} is not one Triton serves",
                         "a Triton repository is for a TensorRT target, such as t4")
    (width, height), *others = target.input_sizes("a Triton engine takes one input size")
    if others:
        raise InputError(f"target {target.name}: {len(others) + 1} input sizes; the repository takes one (letterbox)")
    deployed = backend.deployed_model(run_dir, target)
    if deployed is None or not deployed.is_file():
        where = "emulate" if backend.unavailable_for(target) else "host"
        deployment.load(target, run_dir, where, data, log, progress)
        deployed = backend.deployed_model(run_dir, target)
    engine = converted(run_dir, target)
    engine = engine if engine is not None and engine.suffix in (".engine", ".plan") else None
    configs = _configs(target, platform, width, height, threshold)
    with runfolder.transaction(out, f"export --target {target.name} --format triton", kind="triton") as staged:
        for rel, text in configs.items():
            fileio.write_text(staged / rel, text)
        fileio.write_text(staged / "centerface" / "1" / ".keep", "")
        for name in ("pre", "post"):
            fileio.write_with(staged / f"centerface_{name}" / "1" / "model.py",
                              lambda tmp, n=name: shutil.copyfile(MODELS / f"{n}.py", tmp))
        fileio.write_with(staged / "centerface_engine" / "1" / "model.onnx", lambda tmp: shutil.copyfile(deployed, tmp))
        if engine is not None:
            fileio.write_with(staged / "centerface_engine" / "1" / "model.plan", lambda tmp: shutil.copyfile(engine, tmp))
        fileio.write_text(staged / "build-engine.sh", _build_script(target, width, height))
        (staged / "build-engine.sh").chmod(0o755)
        fileio.write_text(staged / "README.md", _readme(target, deployed, engine, width, height))
    log(f"wrote the Triton repository {out} ({'with its engine' if engine else 'build-engine.sh builds its engine'})")
    return out


def _configs(target: Target, platform: str, width: int, height: int, threshold: float) -> dict[str, str]:
    most = max(target.batch_sizes)
    size = {"w": width // OUTPUT_STRIDE, "h": height // OUTPUT_STRIDE}
    outputs = {name: [channels, size["h"], size["w"]] for name, channels in OUTPUT_CHANNELS.items()}
    device = ContainerConfig.of(target).device
    engine = _model("centerface_engine", most, [(INPUT_NAME, "TYPE_FP32", [3, height, width])],
                    [(n, "TYPE_FP32", dims) for n, dims in outputs.items()], platform=platform,
                    extra=[f"dynamic_batching {{ preferred_batch_size: [ {most} ] max_queue_delay_microseconds: "
                           f"{QUEUE_DELAY_US} }}",
                           f"instance_group [ {{ kind: KIND_GPU count: 1 gpus: [ {device} ] }} ]"])
    pre = _model("centerface_pre", most, [("IMAGE", "TYPE_UINT8", [-1, -1, 3])],
                 [("INPUT", "TYPE_FP32", [3, height, width]), ("TRANSFORM", "TYPE_FP32", [6])], backend="python",
                 extra=[_parameters({"WIDTH": width, "HEIGHT": height}), "instance_group [ { kind: KIND_CPU count: 2 } ]"])
    post = _model("centerface_post", most, [*((n, "TYPE_FP32", d) for n, d in outputs.items()),
                                            ("TRANSFORM", "TYPE_FP32", [6])], [("FACES", "TYPE_FP32", [-1, 15])],
                  backend="python", extra=[_parameters({"THRESHOLD": threshold, "NMS_IOU": NMS_IOU}),
                                           "instance_group [ { kind: KIND_CPU count: 2 } ]"])
    ensemble = _model("centerface", most, [("IMAGE", "TYPE_UINT8", [-1, -1, 3])], [("FACES", "TYPE_FP32", [-1, 15])],
                      platform="ensemble", extra=[_steps(list(outputs))])
    return {"centerface/config.pbtxt": ensemble, "centerface_pre/config.pbtxt": pre,
            "centerface_engine/config.pbtxt": engine, "centerface_post/config.pbtxt": post}


def _model(name: str, max_batch: int, inputs: list, outputs: list, platform: str | None = None,
           backend: str | None = None, extra: list[str] = ()) -> str:
    kind = f'platform: "{platform}"' if platform else f'backend: "{backend}"'
    lines = [f'name: "{name}"', kind, f"max_batch_size: {max_batch}",
             "input [", ",\n".join(_tensor(*t) for t in inputs), "]",
             "output [", ",\n".join(_tensor(*t) for t in outputs), "]", *extra]
    return "\n".join(lines) + "\n"


def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'


def _parameters(values: dict) -> str:
    return "\n".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in values.items())


def _steps(outputs: list[str]) -> str:
    """The ensemble's three steps: letterbox, engine, decode."""
    engine_out = " ".join(f'output_map {{ key: "{n}" value: "{n}" }}' for n in outputs)
    post_in = " ".join(f'input_map {{ key: "{n}" value: "{n}" }}' for n in outputs)
    return "\n".join([
        "ensemble_scheduling {", "  step [",
        '    { model_name: "centerface_pre" model_version: -1 input_map { key: "IMAGE" value: "IMAGE" } '
        'output_map { key: "INPUT" value: "INPUT" } output_map { key: "TRANSFORM" value: "TRANSFORM" } },',
        f'    {{ model_name: "centerface_engine" model_version: -1 input_map {{ key: "{INPUT_NAME}" value: "INPUT" }} '
        f"{engine_out} }},",
        f'    {{ model_name: "centerface_post" model_version: -1 {post_in} input_map {{ key: "TRANSFORM" '
        'value: "TRANSFORM" } output_map { key: "FACES" value: "FACES" } }', "  ]", "}"])


def _build_script(target: Target, width: int, height: int) -> str:
    low, high = min(target.batch_sizes), max(target.batch_sizes)
    shapes = lambda b: f"{INPUT_NAME}:{b}x3x{height}x{width}"  # noqa: E731
    return "\n".join([
        "#!/bin/sh", "# Builds centerface_engine/1/model.plan from the deployed typed ONNX, in Triton's own image on the",
        "# GPU that will serve it (an engine runs only where it was built). Strongly typed: the precision is in the ONNX.",
        "set -eu", 'cd "$(dirname "$0")"',
        f'docker run --rm --gpus all -v "$PWD:/models" {TRITON_IMAGE} /usr/src/tensorrt/bin/trtexec \\',
        "    --onnx=/models/centerface_engine/1/model.onnx --saveEngine=/models/centerface_engine/1/model.plan \\",
        f"    --minShapes={shapes(low)} --optShapes={shapes(high)} --maxShapes={shapes(high)}", ""])


def _readme(target: Target, deployed: Path, engine: Path | None, width: int, height: int) -> str:
    return "\n".join([
        f"# Triton model repository: {target.name}", "",
        f"Made by the CenterFace deployment toolkit from `{deployed.name}` (the model the toolkit deploys for "
        f"{target.name}; its AP is in that run's result.json).", "",
        "- `centerface` (ensemble): IMAGE, a decoded RGB image (uint8, H x W x 3), in; FACES (N x 15: x1 y1 x2 y2 "
        "score, then five landmarks' x y, in the image's pixels) out.",
        f"- `centerface_pre`: the toolkit's letterbox to {width}x{height} (NumPy; the tests compare it with the "
        "toolkit's own on real WIDER images).",
        "- `centerface_engine`: " + ("the engine built on the target's GPU (model.plan)." if engine else
                                     "run `./build-engine.sh` on the serving GPU first: it builds model.plan from "
                                     "model.onnx with trtexec in Triton's image."),
        "- `centerface_post`: the toolkit's decode and NMS (NumPy; tested against the toolkit's own).", "",
        "What was run where it was made: every config.pbtxt parsed with Triton's model_config.proto (the tests), the "
        "Python models' functions against the toolkit's. What was not: no Triton server, no trtexec, no GPU.", ""])

"""Engine build through the TensorRT Python API, and the metadata that ties an engine to its GPU and
TensorRT version (checked on load: an engine made elsewhere is refused, and rebuilt by `convert`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit import fileio, reading
from toolkit.backends.tensorrt import cuda, majors
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.errors import InputError, ToolkitError
from toolkit.model.signature import INPUT_NAME
from toolkit.model.weights import sha256

CHECKED = ("tensorrt", "gpu", "compute_capability")  # what must match for an engine to load


def meta_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def current(device_id: int = 0) -> dict:
    import tensorrt as trt

    return {"tensorrt": trt.__version__, **cuda.device(device_id)}


def mismatches(meta: dict, here: dict) -> list[str]:
    return [f"{key} {meta.get(key)} (here {here[key]})" for key in CHECKED if meta.get(key) != here[key]]


def check(engine: Path, here: dict) -> dict:
    """The engine's metadata, or an error saying what differs and how to rebuild."""
    path = meta_path(engine)
    if not path.is_file():
        raise InputError(f"{engine}: no {path.name} beside it, so its GPU and TensorRT version are unknown",
                         "rebuild it: run --stages convert")
    meta = reading.read_json(path, dict)
    wrong = mismatches(meta, here)
    if wrong:
        raise InputError(f"{engine}: made for {', '.join(wrong)}; engines only run where they were built",
                         "rebuild it here: run --stages convert")
    return meta


def reusable(engine: Path, onnx: Path, settings: TensorRTSettings, here: dict) -> bool:
    """An engine already built here from this ONNX with these settings."""
    path = meta_path(engine)
    if not (engine.is_file() and path.is_file()):
        return False
    meta = reading.read_json(path, dict)
    return not mismatches(meta, here) and meta.get("onnx_sha256") == sha256(onnx) and meta.get("settings") == vars(settings)


def profile_batches(settings: TensorRTSettings) -> tuple[int, int, int]:
    return settings.min_batch, settings.opt_batch, settings.max_batch


def describe_profiles(settings: TensorRTSettings) -> str:
    """'profile batch 1/16/16 at 800x800', or one per bucket."""
    sizes = ", ".join(f"{w}x{h}" for w, h in settings.sizes)
    count = f"{len(settings.sizes)} profiles" if len(settings.sizes) > 1 else "profile"
    return f"{count} batch {settings.min_batch}/{settings.opt_batch}/{settings.max_batch} at {sizes}"


def build(onnx: Path, engine: Path, settings: TensorRTSettings, timing_cache: Path, log: Callable[[str], None]) -> dict:
    """Parse the typed ONNX into a strongly typed network (its precision is the graph's: FP16 tensors,
    Q/DQ for INT8), configure profiles, workspace and timing cache, build, write engine + metadata."""
    import tensorrt as trt

    majors.major_of(trt.__version__)  # TensorRT < 10 (or an unknown major) is refused here
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes(), str(onnx)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise InputError(f"{onnx}: TensorRT's ONNX parser failed: "
                         + "; ".join(f"{e.desc()} (node {e.node()} {getattr(e, 'node_name', str)()})" for e in errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    for size in settings.sizes:  # one optimisation profile per input size (bucket), in settings.sizes order
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, *(settings.shape(b, size) for b in profile_batches(settings)))
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building the strongly typed {settings.precision} engine ({describe_profiles(settings)}); minutes on a first build")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ToolkitError(f"TensorRT could not build an engine from {onnx} (see its log above)")
    fileio.write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    fileio.write_bytes(engine, bytes(serialized))
    meta = {**current(settings.device_id), "precision": settings.precision, "strongly_typed": True,
            "settings": vars(settings), "onnx": onnx.name, "onnx_sha256": sha256(onnx),
            "profiles": [{k: list(settings.shape(b, size)) for k, b in zip(("min", "opt", "max"), profile_batches(settings))}
                         for size in settings.sizes]}
    fileio.write_json(meta_path(engine), meta)
    return meta

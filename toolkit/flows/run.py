"""`run`, `convert` and `run --dry-run`: a target's chain in one run-folder transaction, on the host or
with the host's export followed by the other stages in the target's image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from toolkit import backends, calibration, fileio, runfolder
from toolkit.chain import INFER_ENTRIES, ChainOptions, run_chain
from toolkit.cluster import check_engine_mode
from toolkit.containers import launch, runspec
from toolkit.containers.config import ContainerConfig
from toolkit.model.signature import check_onnx_file
from toolkit.target import Target


def container_args(opts: ChainOptions, passed: list[tuple[str, object]]) -> list[str]:
    """The `run` the target's image runs: every stage but export, with the options the user gave."""
    return ["run", "--target", opts.target.name, "--stages", ",".join(s for s in opts.stages if s != "export"),
            *launch.flags(passed), *launch.device_flags(opts.target), *(["--skip-bad"] if opts.skip_bad else []),
            *(["--tta"] if opts.target.tta else []), *(["--calib-data", runspec.CALIB] if _calib_mount(opts) else [])]


def _calib_mount(opts: ChainOptions) -> tuple[runspec.Mount, ...]:
    """The user's calibration images (--calib-data), read-only at /calib in the target's image."""
    folder = (opts.target.extra.get("calibration") or {}).get(calibration.FOLDER)
    return (runspec.Mount(folder, runspec.CALIB, True),) if folder else ()


def run_target(opts: ChainOptions, where: str, passed: list[tuple[str, object]], log: Callable[[str], None],
               progress=None) -> dict | None:
    """The chain into `opts.out_dir`, which changes only if all of it succeeds. Returns the result of a
    host run that inferred (a container run shows its own). The target's device ids pick the chips."""
    device_ids = opts.target.device_ids
    check_engine_mode(opts.cluster, where, opts.target.tta)
    config = launch.built_image(opts.target, device_ids) if where == "container" else None  # before any work
    fresh = INFER_ENTRIES if "infer" in opts.stages else ()
    with runfolder.transaction(opts.out_dir, f"run --target {opts.target.name} --mode {where}", fresh=fresh,
                               reads=opts.data) as staged:
        here = replace(opts, out_dir=staged, emulate=where == "emulate")
        if config is None:
            result = run_chain(here, log, progress)
            return result if "infer" in opts.stages else None
        if "export" in opts.stages:
            run_chain(replace(here, stages=("export",)), log, progress)
        if set(opts.stages) - {"export"}:
            image_id = launch.in_container(config, container_args(opts, passed), staged, opts.data, device_ids, log,
                                           _calib_mount(opts))
            if "infer" in opts.stages:
                launch.record_image(staged, config, image_id, opts.data, device_ids)
    return None


def plan(opts: ChainOptions, where: str, passed: list[tuple[str, object]]) -> dict:
    """Every step with its exact command line and the files it writes, nothing run: written to
    plan.json (with config files such as the AIPP file) in the run folder, and returned."""
    target, shown_dir, device_ids = opts.target, opts.out_dir, opts.target.device_ids
    backend = backends.get(target.backend)
    shown = Path(runspec.container_path(shown_dir)) if where == "container" else shown_dir
    container, container_user = None, None
    if where == "container":
        spec = launch.container_spec(ContainerConfig.of(target), container_args(opts, passed), shown_dir, opts.data,
                                     device_ids, _calib_mount(opts))
        container, container_user = spec.docker_cli(), spec.user_why
    with runfolder.transaction(shown_dir, "run --dry-run", reads=opts.data) as staged:
        steps = backend.dry_run(target, staged, shown)
        made = {"target": target.name, "backend": target.backend, "precision": target.precision,
                "run_folder": str(shown_dir), "runs_in": where, "unavailable": backend.unavailable_for(target),
                "container": container, "container_user": container_user,
                "steps": [{"title": s.title, "command": s.command, "shell": s.shell() if s.command else None,
                           "writes": s.writes} for s in steps]}
        fileio.write_json(staged / "plan.json", made)
    return made


def convert_model(target: Target, onnx_path: Path, out_dir: Path) -> Path:
    """The target's artefact from an exported ONNX, into the run folder `out_dir`."""
    backend = backends.require(target)
    check_onnx_file(onnx_path)
    with runfolder.transaction(out_dir, f"convert --target {target.name}") as staged:
        made = backend.convert(onnx_path.resolve(), target, staged)
    return out_dir / made.relative_to(staged)

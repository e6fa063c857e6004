"""One deployment, many uses: what a run folder holds for one target (its converted model, the backend that runs
it, the target's preprocessing, batch size, streams and devices), found or made once, so that `detect` answers
with the numerics the report measured. Where the run folder has no converted model, it is made first, as
`run --stages export,convert` makes it (in the target's image for a container target)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.backends.base import Backend, Runner
from toolkit.chain import ChainOptions, check_converted, chosen_backend, converted, own_state
from toolkit.errors import InputError
from toolkit.target import Target


@dataclass(frozen=True)
class Deployment:
    target: Target
    run_dir: Path
    backend: Backend
    artefact: Path
    emulated: bool

    def runner(self) -> Runner:
        return self.backend.runner(self.artefact, self.target)

    def describe(self) -> dict:
        """What detections were made with (every output carries it; EMULATED where they were)."""
        found = {"target": self.target.name, "backend": self.target.backend, "precision": self.target.precision,
                 "run_folder": str(self.run_dir), "model": self.artefact.name, "preprocess": self.target.preprocess.as_dict(),
                 "emulated": self.emulated}
        if self.emulated:
            found["emulation"] = self.backend.record(self.artefact)["numerics"]
        return found

    def label(self) -> str:
        return f"{self.target.name}" + (", EMULATED on this CPU" if self.emulated else "")


def load(target: Target, run_dir: Path, where: str, data: Path | None, log: Callable[[str], None],
         progress=None) -> Deployment:
    """The deployment in `run_dir` for `target` as `where` runs it (host, container, emulate), converted first
    where the folder has no converted model of that mode."""
    emulate = where == "emulate"
    backend = chosen_backend(target, emulate, where != "container", log)
    if _artefact(run_dir, target, emulate) is None:
        from toolkit.flows.run import run_target

        log(f"{run_dir}: no converted model of {target.name}{' (emulated)' if emulate else ''} yet: converting it "
            "first, as run --stages export,convert would")
        run_target(ChainOptions(target, run_dir, data, stages=("export", "convert")), where, [], log, progress)
    artefact = _artefact(run_dir, target, emulate)
    if artefact is None:
        raise InputError(f"{run_dir}: still no converted model after converting", "run --stages export,convert")
    return Deployment(target, run_dir, backend, artefact, emulate)


def _artefact(run_dir: Path, target: Target, emulate: bool) -> Path | None:
    """The converted model, where the folder holds one; a folder of another target, or converted in the other
    mode (emulated or not), is refused: its result.json measured that one."""
    artefact = converted(run_dir, target)
    if artefact is not None:
        check_converted(run_dir, own_state(run_dir, target, "convert"), emulate)
    return artefact

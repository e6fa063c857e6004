"""Declarative targets: one TOML file per target under targets/ (adding a target = adding a file)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from toolkit import toml
from pathlib import Path

from toolkit.data.preprocess import Preprocess
from toolkit.errors import InputError
from toolkit.paths import TARGETS_DIR


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    description: str
    precision: str
    preprocess: Preprocess
    batch_sizes: tuple[int, ...]
    runs_in: str  # "host" or "container"
    threshold: float = 0.05
    export_shape: str = "dynamic"  # BxCxHxW or "dynamic"
    extra: dict = field(default_factory=dict)  # backend-specific keys

    def fixed_size(self, why: str) -> tuple[int, int]:
        """(width, height) of a letterbox input; fixed-shape backends say `why` they need one."""
        if self.preprocess.mode != "letterbox":
            raise InputError(f"target {self.name}: {why}, so preprocess must be letterbox")
        return self.preprocess.width, self.preprocess.height

    def overridden(self, preprocess: Preprocess | None, batch_size: int | None) -> Target:
        """This target with a command line's --preprocess / --size and --batch-size (converted for and
        run at those, so the plan, the artefacts and the inference agree)."""
        target = self if preprocess is None else replace(self, preprocess=preprocess)
        if batch_size is None:
            return target
        if batch_size < 1:
            raise InputError(f"batch size {batch_size}: must be 1 or more")
        return replace(target, batch_sizes=(batch_size, *(b for b in self.batch_sizes if b != batch_size)))

    def as_dict(self) -> dict:
        return {"name": self.name, "backend": self.backend, "precision": self.precision,
                "preprocess": self.preprocess.as_dict(), "batch_sizes": list(self.batch_sizes),
                "runs_in": self.runs_in}


def available() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load(name_or_path: str) -> Target:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = TARGETS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise InputError(f"target {name_or_path!r}: no {path}", f"known targets: {', '.join(available())}")
    try:
        raw = toml.loads(path.read_text())
    except toml.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    try:
        inp = raw.pop("input", {})
        size = inp.get("size")
        pre = Preprocess(inp.get("preprocess", "native"), *(size or (None, None)))
        return Target(
            name=raw.pop("name", path.stem),
            backend=raw.pop("backend"),
            description=raw.pop("description", ""),
            precision=raw.pop("precision", "fp32"),
            preprocess=pre,
            batch_sizes=tuple(inp.get("batch_sizes", [1])),
            runs_in=raw.pop("runs_in", "host"),
            threshold=float(raw.pop("threshold", 0.05)),
            export_shape=raw.pop("export_shape", "dynamic"),
            extra=raw,
        )
    except KeyError as exc:
        raise InputError(f"{path}: missing key {exc.args[0]!r}") from None

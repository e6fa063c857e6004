"""Models and runners per input size: what fixed-shape chips take for shape buckets (one static model,
or gear, or profile per bucket), on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.backends.base import Runner, RunnerInfo, batch_hw
from toolkit.errors import InputError


def static_per_size(src: Path, out: Path, stem: str, sizes: list[tuple[int, int]]) -> list[Path]:
    """One model per (width, height) input, batch left dynamic (what fixed-shape chips take per bucket)."""
    from toolkit.model.static import make_static

    return [make_static(src, out / f"{stem}.{w}x{h}.onnx", None, h, w) for w, h in sizes]


class SizedRunner(Runner):
    """One runner per input size (a bucket each); a batch goes to the runner of its size. The runners take
    one layout (float32 NCHW, or the uint8 NHWC of an AIPP model), which the wrapper takes too."""

    def __init__(self, runners: dict[tuple[int, int], Runner], name: str) -> None:
        self.runners, self.name = runners, name  # (height, width) -> runner
        self.info = RunnerInfo.of_children(list(runners.values()), each_stream=False)
        self.source = ", ".join(r.source for r in runners.values())

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        if batch_hw(batch, self.info.layout) not in self.runners:
            height, width = batch_hw(batch, self.info.layout)
            raise InputError(f"{self.name}: input {height}x{width} (HxW) is none of its sizes "
                             f"({', '.join(f'{h}x{w}' for h, w in self.runners)})")

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.runners[batch_hw(batch, self.info.layout)].infer(batch)

    def _release(self) -> None:
        for runner in getattr(self, "runners", {}).values():
            runner.close()

"""The run every AP delta of the report is measured against, compared image for image: where another run
evaluated other images (an INT8 target leaves its calibration images out, a run of `--limit 2`), both are
evaluated again on the images they share (the reference restricted to the other run's images, as `run`
measures an INT8 target), and the row says on how many. Where images cannot be paired, there is no delta."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit import reading
from toolkit.data.wider import SETTINGS, GroundTruth, image_key, load_ground_truth
from toolkit.errors import InputError
from toolkit.evaluate.deltas import ap_deltas
from toolkit.evaluate.wider_ap import evaluate, read_predictions

NO_DELTAS = {f"delta_{s}": None for s in SETTINGS}


@dataclass(frozen=True)
class Compared:
    deltas: dict[str, float | None]
    images: int | None  # the images both runs evaluated (None: no delta)
    note: str = ""  # how the deltas were made where the runs' images differ, or why there are none


def predictions_of(run: dict) -> Path:
    """A run's prediction folder, which its result.json names inside the run folder."""
    folder = Path(run.get("_dir") or run["_run"])
    named = str((run.get("artefacts") or {}).get("predictions") or "predictions")
    return reading.inside(folder, named, folder / "result.json")


def evaluated_keys(run: dict) -> frozenset[str] | None:
    """The images a run's AP is over: its prediction files, less those with no ground truth (None: it kept no
    predictions to tell)."""
    folder = predictions_of(run)
    if not folder.is_dir():
        return None
    found = {image_key(p.parent.name, p.stem) for p in folder.glob("*/*.txt")}
    return frozenset(found - set((run.get("evaluation") or {}).get("without_ground_truth") or []))


class Reference:
    """The reference run (None: there is none) and the evaluations a comparison needed, made once each."""

    def __init__(self, run: dict | None) -> None:
        self.run = run
        self.name = run["_run"] if run else None
        self.keys = evaluated_keys(run) if run else None
        self._truth: dict[str, GroundTruth | None] = {}
        self._aps: dict[tuple[str, frozenset[str]], dict] = {}

    @property
    def ap(self) -> dict | None:
        return self.run.get("ap") if self.run else None

    def compare(self, run: dict, ap: dict | None) -> Compared:
        """`ap` (the run's, or another AP over the run's images) against the reference on the same images."""
        if not ap or not self.ap:
            return Compared(NO_DELTAS, None)
        keys = evaluated_keys(run)
        if keys is None or self.keys is None:
            whose = "its" if keys is None else f"{self.name}'s"
            return Compared(NO_DELTAS, None, f"no Δ: {whose} predictions/ are gone, so the images cannot be paired")
        if keys == self.keys:
            return Compared(ap_deltas(ap, self.ap), len(keys))
        common = keys & self.keys
        if not common:
            return Compared(NO_DELTAS, None, f"no Δ: no image in common with {self.name}")
        truth = self._ground_truth(run)
        if truth is None:
            return Compared(NO_DELTAS, None, f"no Δ: its images differ from {self.name}'s, and pairing them needs the "
                                             f"ground truth at {run.get('dataset')}, which is not there")
        mine = ap if common == keys else self._ap(run, common, truth)
        theirs = self._ap(self.run, common, truth)
        return Compared(ap_deltas(mine, theirs), len(common),
                        f"Δ on the {len(common)} images both evaluated ({len(keys)} here, {len(self.keys)} in "
                        f"{self.name})")

    def _ground_truth(self, run: dict) -> GroundTruth | None:
        root = str(run.get("dataset") or self.run.get("dataset") or "")
        if root not in self._truth:
            try:
                self._truth[root] = load_ground_truth(Path(root)) if root and Path(root).is_dir() else None
            except InputError:
                self._truth[root] = None
        return self._truth[root]

    def _ap(self, run: dict, keys: frozenset[str], truth: GroundTruth) -> dict:
        cached = (str(predictions_of(run)), keys)
        if cached not in self._aps:
            predictions = {k: v for k, v in read_predictions(predictions_of(run)).items() if k in keys}
            self._aps[cached] = evaluate(predictions, truth.restricted(keys)).aps()
        return self._aps[cached]

"""PNG plots for the report: precision-recall curves per setting and throughput per target / batch. Each
function returns a writer of its PNG (for fileio.publish, which writes the report's files together), or None
where there is nothing to plot; the curves are read, and checked, before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import reading
from toolkit.data.wider import SETTINGS

CURVES = [f"{s}_{kind}" for s in SETTINGS for kind in ("precision", "recall")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pr_curves(runs_dir: Path, runs: list[dict]) -> Callable[[Path], None] | None:
    files = {r["_run"] + (" (emulated on CPU)" if r.get("emulated") else ""): runs_dir / r["_run"] / "pr_curves.npz"
             for r in runs}
    curves = {name: reading.npz(file, CURVES, "curves file") for name, file in files.items() if file.is_file()}
    if not curves:
        return None

    def write(tmp: Path) -> None:
        plt = _pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        for ax, setting in zip(axes, SETTINGS):
            for name, data in curves.items():
                ax.plot(data[f"{setting}_recall"], np.nan_to_num(data[f"{setting}_precision"]), label=name)
            ax.set(title=f"WIDER FACE {setting}", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
            ax.grid(alpha=0.3)
        axes[0].legend(loc="lower left", fontsize=8)
        _save(plt, fig, tmp)
    return write


SOURCE_MARK = {"published": " (pub)", "simulated": " (SIMULATED)"}  # never read as a measured bar


def bar_label(row: dict) -> str:
    return f"{row['target']} bs{row['batch']}" + SOURCE_MARK.get(row["source"], "")


def throughput(table: list[dict]) -> Callable[[Path], None] | None:
    bars = [(bar_label(r), r["infer_images_per_s"], r["e2e_images_per_s"], r["source"])
            for r in table if r.get("batch") and (r.get("infer_images_per_s") or r.get("e2e_images_per_s"))]
    if not bars:
        return None

    def write(tmp: Path) -> None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(max(6, len(bars) * 0.9), 4.5))
        x = np.arange(len(bars))
        ax.bar(x - 0.2, [b[1] or 0 for b in bars], 0.4, label="pure inference")
        ax.bar(x + 0.2, [b[2] or 0 for b in bars], 0.4, label="end to end")
        ax.set_xticks(x, [b[0] for b in bars], rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="images / s", yscale="log", title="throughput per target and batch size")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        _save(plt, fig, tmp)
    return write


def _save(plt, fig, path: Path) -> None:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
    finally:
        plt.close(fig)

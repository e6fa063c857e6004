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


def bar_groups(table: list[dict]) -> list[tuple[str, list[tuple[str, float | None, float | None]]]]:
    """The throughput plot's bars: a bar (label, infer/s, e2e/s) for each row of the text report with a batch size
    and a speed, grouped by the report's blocks in its order."""
    from toolkit.report.table import BLOCKS

    groups = [(kind, [(bar_label(r), r["infer_images_per_s"], r["e2e_images_per_s"]) for r in table
                      if r["source"] == kind and r["status"] != "unavailable" and r.get("batch")
                      and (r.get("infer_images_per_s") or r.get("e2e_images_per_s"))]) for kind in BLOCKS]
    return [(kind, bars) for kind, bars in groups if bars]


def throughput(table: list[dict]) -> Callable[[Path], None] | None:
    groups = bar_groups(table)
    if not groups:
        return None

    def write(tmp: Path) -> None:
        plt = _pyplot()
        bars = [bar for _, group in groups for bar in group]
        fig, ax = plt.subplots(figsize=(max(6, len(bars) * 0.9), 4.5))
        x = np.arange(len(bars))
        ax.bar(x - 0.2, [b[1] or 0 for b in bars], 0.4, label="pure inference")
        ax.bar(x + 0.2, [b[2] or 0 for b in bars], 0.4, label="end to end")
        start = 0
        for kind, group in groups:  # each block's name over its bars, a line between blocks
            ax.text(start + (len(group) - 1) / 2, 1.0, kind, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8)
            if start:
                ax.axvline(start - 0.5, color="grey", linewidth=0.8)
            start += len(group)
        ax.set_xticks(x, [b[0] for b in bars], rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="images / s", yscale="log")
        ax.set_title("throughput per target and batch size, by the report's blocks", pad=16)
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


LOSSLESS_DB = 80  # an SQNR from here up is no loss worth drawing apart (an exact 0..255 input: ~400 dB)


def layer_errors(found: dict) -> Callable[[Path], None]:
    """Each convolution's error (dB against the float model) against its FLOPs, coloured and named by block."""
    rows = [r for r in found["convolutions"] if r["vs_float_sqnr_db"] is not None]

    def write(tmp: Path) -> None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(9, 5.5))
        blocks = list(dict.fromkeys(r["block"] for r in rows))
        colours = plt.get_cmap("tab20")
        for i, block in enumerate(blocks):
            mine = [r for r in rows if r["block"] == block]
            exact = [r["vs_float_sqnr_db"] >= LOSSLESS_DB for r in mine]  # drawn at the top, as triangles
            ax.scatter([r["flops"] / 1e6 for r in mine], [min(r["vs_float_sqnr_db"], LOSSLESS_DB) for r in mine],
                       s=24, color=colours(i % 20), label=block, marker=None if not any(exact) else "^")
        ax.set(xscale="log", xlabel=f"MFLOPs at {'x'.join(map(str, found['input'][::-1]))}",
               ylabel=f"SQNR of the input vs the float model, dB\n(higher: less lost; {LOSSLESS_DB}: none)",
               title="quantisation error per convolution")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="best")
        _save(plt, fig, tmp)
    return write


def search_curve(found: dict) -> Callable[[Path], None]:
    """calibrate --search: each point tried, AP delta per setting against the float share of the cost, the
    budget drawn, the chosen point ringed."""
    points = sorted(found["points"], key=lambda p: p["float_cost_share"])

    def write(tmp: Path) -> None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for setting, colour in zip(("easy", "medium", "hard"), ("tab:green", "tab:orange", "tab:red")):
            ax.plot([100 * p["float_cost_share"] for p in points], [p[f"delta_{setting}"] or 0 for p in points],
                    "o-", color=colour, label=setting)
            ax.axhline(-found["budget"][setting], color=colour, linestyle=":", linewidth=1)
        chosen = found["chosen"]
        ax.scatter([100 * chosen["float_cost_share"]] * 3, [chosen[f"delta_{s}"] or 0 for s in ("easy", "medium", "hard")],
                   s=140, facecolors="none", edgecolors="black", label="chosen")
        emulated = ", emulated" if found["emulated"] else ""
        ax.set(xlabel=f"float share of the {found['cost']}, %", ylabel="AP against FP32, points (selection half)",
               title=f"{found['target']}{emulated}: the float set search (budget dotted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(plt, fig, tmp)
    return write

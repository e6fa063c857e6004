"""AP differences against a reference run, in AP points (what every accuracy gate compares)."""

from __future__ import annotations

from toolkit.data.wider import SETTINGS


def ap_deltas(ap: dict | None, ref: dict | None) -> dict[str, float | None]:
    """`delta_<setting>`: AP - reference AP, in points; None where either has no figure."""
    return {f"delta_{s}": round((ap[s] - ref[s]) * 100, 2) if ap and ref and ap.get(s) is not None
            and ref.get(s) is not None else None for s in SETTINGS}


def worst_drop(row: dict) -> float | None:
    """The largest AP loss (points) over the settings of a row with delta_* columns; None where no setting has
    a delta (no AP to compare)."""
    known = [row[f"delta_{s}"] for s in SETTINGS if row.get(f"delta_{s}") is not None]
    return -min(known) if known else None


def ap_words(ap: dict | None) -> str:
    """An AP in words: `easy 0.9341, medium 0.9012, hard 0.7123` (none where a setting has no figure)."""
    return ", ".join(f"{s} {'none' if (ap or {}).get(s) is None else format(ap[s], '.4f')}" for s in SETTINGS)

"""PNG plots of a run: training curves from metrics.jsonl, and eval's log-prob gap histogram.

matplotlib with the Agg backend (no screen needed). Each figure is written under a temporary name
and renamed, so a reader (the model card, a browser, `orpo-dist report` of a running job) never
sees half a PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import partial_path

# Figure file -> (title, [(metrics.jsonl key, label)]). Train records carry the bare names, the
# Trainer's eval records the same names prefixed with eval_.
CURVES = {
    "loss.png": ("ORPO loss", [("loss", "loss"), ("nll_loss", "NLL"),
                               ("log_odds_ratio", "log_odds_ratio (mean log-sigmoid of the log-odds)")]),
    "rewards.png": ("Rewards (beta x mean log-prob)", [("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"),
                                                        ("rewards/margins", "margin")]),
    "accuracy.png": ("Preference accuracy (chosen reward > rejected)", [("rewards/accuracies", "accuracy")]),
}
GAP_HISTOGRAM = "eval-gap-histogram.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = partial_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a signal or a full disk mid-save leaves no half picture
    return path


def series(records: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of a key over the records that have it and a step."""
    return [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]


def training_plots(records: list[dict], folder: Path) -> list[Path]:
    """One PNG per CURVES entry that has data; train solid, eval dashed. Returns the files written."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (title, keys) in CURVES.items():
        lines = []
        for key, label in keys:
            for prefix, style, split in (("", "-", "train"), ("eval_", "--", "eval")):
                points = series(records, prefix + key)
                if points:
                    lines.append((points, f"{label} ({split})", style))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for points, label, style in lines:
            steps, values = zip(*points)
            ax.plot(steps, values, style, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, folder / name))
        plt.close(fig)
    return written


def gap_histogram(base_gaps: list[float], trained_gaps: list[float], path: Path) -> Path:
    """Distribution of chosen-minus-rejected mean log-prob over pairs, base and trained on one axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    everything = [*base_gaps, *trained_gaps]
    low, high = min(everything), max(everything)
    bins = [low + (high - low) * i / 30 for i in range(31)] if high > low else 10
    ax.hist(base_gaps, bins=bins, alpha=0.55, label="base")
    ax.hist(trained_gaps, bins=bins, alpha=0.55, label="trained")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title("Held-out pairs: chosen minus rejected mean log-prob per token")
    ax.set_xlabel("gap (> 0: the model prefers the chosen answer)")
    ax.set_ylabel("pairs")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = _save(fig, path)
    plt.close(fig)
    return out

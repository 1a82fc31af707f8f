"""Summary statistics of per-pair scores: accuracy with a bootstrap interval, gaps, per category.

Pure Python (random.Random with a fixed seed): the same pairs give the same interval every time.
"""

from __future__ import annotations

import random
from collections import defaultdict

from ..data.formats import CATEGORY_COLUMNS

BOOTSTRAP_SAMPLES = 2000


def bootstrap_interval(wins: list[bool], samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the share of True in `wins` (resampling pairs)."""
    n = len(wins)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    total = sum(wins)
    if total in (0, n):  # every resample gives the same share
        return (total / n, total / n)
    shares = sorted(sum(rng.choices(wins, k=n)) / n for _ in range(samples))
    tail = (1 - level) / 2
    low = shares[int(tail * samples)]
    high = shares[min(samples - 1, int((1 - tail) * samples))]
    return (low, high)


def summarise(chosen: list[float], rejected: list[float]) -> dict:
    """Figures of one model on a set of pairs; `gaps` keeps the distribution for the histogram."""
    n = len(chosen)
    gaps = [c - r for c, r in zip(chosen, rejected)]
    wins = [g > 0 for g in gaps]
    low, high = bootstrap_interval(wins)
    return {
        "pairs": n,
        "chosen_logp": sum(chosen) / n,
        "rejected_logp": sum(rejected) / n,
        "accuracy": sum(wins) / n,
        "accuracy_ci95": [low, high],
        "gap": sum(gaps) / n,
        "gaps": gaps,
    }


def category_column(rows: list[dict]) -> str | None:
    """The column that names each pair's category, if every pair has one."""
    for column in CATEGORY_COLUMNS:
        if rows and all(isinstance(r.get(column), str) and r[column] for r in rows):
            return column
    return None


def by_category(rows: list[dict], column: str, chosen: list[float], rejected: list[float]) -> dict:
    groups = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row[column]].append(i)
    out = {}
    for name in sorted(groups):
        idx = groups[name]
        figures = summarise([chosen[i] for i in idx], [rejected[i] for i in idx])
        figures.pop("gaps")
        out[name] = figures
    return out

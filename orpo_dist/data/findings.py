"""What the data layer found: bad rows with their location and reason, counts and token lengths.

Pure Python (no torch, no datasets) so that the CLI can import it cheaply.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .duplicates import Repeats, warning


@dataclass
class BadRow:
    split: str
    where: str  # "line 87", "row 12", "train-00001.parquet row 3"
    number: int  # 1-based line/row number in its source file or split
    reason: str  # one of the categories in errors.py
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.split} {self.where}: {self.reason}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class SplitReport:
    name: str
    total: int = 0
    bad: list[BadRow] = field(default_factory=list)
    # Token counts of the good rows as training tokenizes them (data/tokenize.py) (empty without tokenizer).
    prompt_tokens: list[int] = field(default_factory=list)
    chosen_tokens: list[int] = field(default_factory=list)
    rejected_tokens: list[int] = field(default_factory=list)
    truncated: int = 0  # good rows whose prompt + longer answer exceeds max_length (answers get cut)
    prompts_cut: int = 0  # good rows whose prompt is cut to its last max_prompt_length tokens
    duplicates: Repeats = field(default_factory=Repeats)  # good rows that repeat an earlier good row

    @property
    def good(self) -> int:
        return self.total - len(self.bad)

    def reason_counts(self) -> Counter:
        return Counter(row.reason for row in self.bad)

    def reasons_text(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reason_counts().items(), key=_by_count))

    def cut_line(self, max_prompt_length: int) -> str:
        prompts = "1 prompt is" if self.prompts_cut == 1 else f"{self.prompts_cut} prompts are"
        return (f"{prompts} cut to their last {max_prompt_length} tokens (max_prompt_length) so that "
                "their rows fit max_length; they train")

    def dropped_line(self, check_command: str) -> str:
        return f"dropped {len(self.bad)} of {self.total} rows ({self.reasons_text()}); see `{check_command}`"

    def length_table(self) -> list[tuple[str, dict[str, int]]]:
        if not self.prompt_tokens:
            return []
        longer = [p + max(c, r) for p, c, r in zip(self.prompt_tokens, self.chosen_tokens, self.rejected_tokens)]
        columns = [
            ("prompt", self.prompt_tokens),
            ("chosen", self.chosen_tokens),
            ("rejected", self.rejected_tokens),
            ("prompt+longer answer", longer),
        ]
        return [(name, percentiles(values)) for name, values in columns]


@dataclass
class DataReport:
    source: str
    format: str = "?"
    rendering: str = "?"  # "chat template" or "plain text"
    max_length: int | None = None
    max_prompt_length: int | None = None
    splits: dict[str, SplitReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    train_split: str = "train"
    # Held-out pairs that are also training pairs, out of held_out_total; held out as split
    # held_out_split, or by eval_split_size when that is None.
    overlap: Repeats | None = None
    held_out_split: str | None = None
    held_out_total: int = 0

    @property
    def bad_rows(self) -> list[BadRow]:
        return [row for split in self.splits.values() for row in split.bad]

    def duplicates_warning(self) -> str | None:
        """One line on the duplicate pairs and the held-out pairs also trained on, or None."""
        return warning({name: split.duplicates for name, split in self.splits.items()}, self.overlap,
                       self.held_out_total, self.held_out_split, self.train_split)


def _by_count(item):
    reason, n = item
    return (-n, reason)


def percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank p50/p90/p99/max."""
    ordered = sorted(values)
    n = len(ordered)
    out = {}
    for label, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        out[label] = ordered[max(0, min(n - 1, math.ceil(q * n) - 1))]
    out["max"] = ordered[-1]
    return out


def format_bad_rows(rows: list[BadRow], limit: int) -> list[str]:
    lines = [f"  {row}" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more bad rows")
    return lines

"""Data layer: read any preference dataset, check every row, hand the ORPO trainer clean
prompt/chosen/rejected strings.

    from orpo_dist.data import prepare_datasets
    data = prepare_datasets(recipe.data, tokenizer, max_length=recipe.training.max_length, seed=recipe.training.seed)
    data.train, data.eval, data.report

`orpo-dist data check DATASET` prints the same findings for a person (orpo_dist/data/cli.py).
"""

from __future__ import annotations

from ..process import is_main_process, main_process_print
from .prepare import PreparedData, analyze, prepare_datasets
from .report import BadRow, DataReport, DataUnusable, SplitReport

__all__ = [
    "BadRow",
    "DataReport",
    "DataUnusable",
    "PreparedData",
    "SplitReport",
    "analyze",
    "is_main_process",
    "main_process_log",
    "prepare_datasets",
]


def main_process_log(message: str) -> None:
    """A `log` callback for prepare_datasets that prints on the main process only."""
    main_process_print(message)

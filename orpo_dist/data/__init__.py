"""Data layer: read any preference dataset, check every row, hand the ORPO trainer clean
prompt/chosen/rejected strings.

    from orpo_dist.data import prepare_datasets
    data = prepare_datasets(recipe.data, tokenizer, max_length=recipe.training.max_length, seed=recipe.training.seed)
    data.train, data.eval, data.report

`orpo-dist data check DATASET` prints the same findings for a person (orpo_dist/data/cli.py).
The names below load on first use: the recipe reads the format table (data/formats.py) without
the loaders behind them.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "BadRow": ".findings",
    "DataReport": ".findings",
    "SplitReport": ".findings",
    "DataUnusable": ".errors",
    "PreparedData": ".prepare",
    "analyze": ".prepare",
    "prepare_datasets": ".prepare",
    "is_main_process": "..process",
}
__all__ = [*_HOMES, "main_process_log"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)


def main_process_log(message: str) -> None:
    """A `log` callback for prepare_datasets that prints on the main process only."""
    from ..process import main_process_print

    main_process_print(message)

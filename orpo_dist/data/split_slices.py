"""Row ranges of a split, in the datasets library's split syntax: `train[:1535]` is the first 1,535
rows of split `train` as stored (before any bad row is dropped), `train[1535:2303]` the next 768.
One file can then give a training set and a held-out set that never share a row, without
copying it into two files."""

from __future__ import annotations

import re
from dataclasses import replace

from ..errors import UserError

_SLICE = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def parse_split(name: str) -> tuple[str, slice | None]:
    """('train', slice(0, 1535)) for 'train[:1535]'; (name, None) for a plain split name."""
    if "[" not in name:
        return name, None
    match = _SLICE.match(name.replace(" ", ""))
    if not match:
        raise UserError(f"split {name!r} is not a split name nor a row range: write NAME or NAME[START:STOP] "
                        "with whole row numbers, e.g. train[:1535] or train[1535:2303]")
    start, stop = (int(match[k]) if match[k] else None for k in ("start", "stop"))
    if (start is not None and start < 0) or (stop is not None and stop < 0):
        raise UserError(f"split {name!r}: row numbers count from 0 and cannot be negative")
    if start is not None and stop is not None and stop <= start:
        raise UserError(f"split {name!r} selects no rows: STOP must be above START")
    return match["base"], slice(start, stop)


def base_names(names: list[str] | None) -> list[str] | None:
    return None if names is None else list(dict.fromkeys(parse_split(n)[0] for n in names))


def add_slices(raw_splits: dict, names: list[str] | None) -> dict:
    """The row ranges among `names`, cut from the splits read, added under their own names."""
    for name in names or []:
        base, rows = parse_split(name)
        if rows is None or base not in raw_splits:
            continue
        whole = raw_splits[base]
        if rows.start is not None and rows.start >= len(whole.rows):
            raise UserError(f"split {name!r} selects no rows: split {base!r} has {len(whole.rows)} rows "
                            f"(numbered 0 to {len(whole.rows) - 1})")
        raw_splits[name] = replace(whole, name=name, rows=whole.rows[rows])
    return raw_splits


def check_disjoint(train: str, test: str | None) -> None:
    """Held-out rows must never be trained on: two ranges of one split may not overlap."""
    if not test or train == test:
        return
    (train_base, a), (test_base, b) = parse_split(train), parse_split(test)
    if train_base != test_base or (a is None and b is None):
        return
    a, b = a or slice(None), b or slice(None)
    a_start, b_start = a.start or 0, b.start or 0
    a_stop, b_stop = a.stop if a.stop is not None else float("inf"), b.stop if b.stop is not None else float("inf")
    if a_start < b_stop and b_start < a_stop:
        raise UserError(f"dataset_train_split {train!r} and dataset_test_split {test!r} share rows: the held-out "
                        "pairs would be trained on. Give them ranges that do not overlap, e.g. train[:1535] and "
                        "train[1535:]")

"""Reading the pairs `orpo-dist eval` scores: the run's heldout.jsonl, or any JSONL of rendered
prompt/chosen/rejected strings (an optional category or source column groups the figures).
A broken line is reported by file and line number, never skipped."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.file_kind import refuse_special, text_lines
from ..errors import UserError

FIELDS = ("prompt", "chosen", "rejected")


def read_pairs(path: Path, limit: int | None = None, given: bool = False) -> list[dict]:
    """`given`: the user named the file (--pairs), rather than the run's own held-out file."""
    if given:
        refuse_special(path)  # a pipe: say so, not "is not a file"
    if not path.is_file():
        if given:
            raise UserError(f"--pairs {path} {'is not a file' if path.exists() else 'does not exist'}")
        raise UserError(f"no pairs file at {path}: the run had no held-out split; pass --pairs FILE.jsonl")
    rows = []
    for number, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno}); "
                            "fix or remove that line") from None
        missing = [k for k in FIELDS if not isinstance(row, dict) or not isinstance(row.get(k), str)]
        if missing:
            raise UserError(f"{path} line {number}: needs string fields {', '.join(FIELDS)} "
                            f"(missing or not text: {', '.join(missing)}); `orpo-dist data check` converts "
                            "other formats")
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise UserError(f"{path} holds no pairs")
    return rows

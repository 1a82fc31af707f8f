"""Pairs that are there twice. A pair repeated within a split is trained on (or scored) twice; a
held-out pair that is also a training pair makes the held-out figures measure memory, not what
the model learnt. Nothing is dropped: the data report and the training log say so, and the user
decides.

Rows are compared by a fingerprint of their prompt/chosen/rejected as read (before rendering, so
that " Hi\n" and "Hi" are one prompt whatever the chat template puts around them), each text's runs
of whitespace made one space and its ends trimmed. Finding them costs one hash and one dict
look-up per row (200k rows: about a second), never a row against every other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

EXAMPLES = 3  # copies named, by line, in the warning


def fingerprint(prompt: str | list[dict[str, str]], chosen: str, rejected: str) -> bytes:
    """16 bytes that two rows share when their texts differ in whitespace only. `prompt`: a string,
    or {role, content} messages."""
    turns = [("", prompt)] if isinstance(prompt, str) else [(m["role"], m["content"]) for m in prompt]
    parts = [part for role, text in turns for part in (role.encode(), _normal(text))]
    return hashlib.blake2b(b"\0".join([*parts, _normal(chosen), _normal(rejected)]), digest_size=16).digest()


def _normal(text: str) -> bytes:
    return b" ".join(text.encode("utf-8", "surrogatepass").split())


@dataclass
class Repeats:
    """Rows that repeat another row: how many, and the first few as (where the copy is, where the
    row it repeats is)."""

    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, first: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append((where, first))


def within(rows) -> Repeats:
    """Rows (with .key and .where) that repeat an earlier row of the same list."""
    first: dict[bytes, str] = {}
    found = Repeats()
    for row in rows:
        if row.key in first:
            found.add(row.where, first[row.key])
        else:
            first[row.key] = row.where
    return found


def across(held_out, training) -> Repeats:
    """Held-out rows that are also training rows."""
    first: dict[bytes, str] = {}
    for row in training:
        first.setdefault(row.key, row.where)
    found = Repeats()
    for row in held_out:
        if row.key in first:
            found.add(row.where, first[row.key])
    return found


def warning(duplicates: dict[str, Repeats], overlap: Repeats | None = None, held_total: int = 0,
            held_split: str | None = None, train: str = "train") -> str | None:
    """One line with both findings, or None when there is neither. `duplicates`: per split; `overlap`:
    the `held_total` held-out pairs also trained on, held out as split `held_split` or, when None, by
    eval_split_size from split `train`."""
    parts = []
    for name, found in duplicates.items():
        if found.count:
            pairs = "1 duplicate pair" if found.count == 1 else f"{found.count} duplicate pairs"
            parts.append(f"split {name!r} has {pairs} ({_examples(found, '', 'repeats ')})")
    if overlap is not None and overlap.count:
        if held_split is None:
            held, examples = "held out by eval_split_size", _examples(overlap, "held-out ", "is ")
        else:
            held, examples = f"of split {held_split!r}", _examples(overlap, f"{held_split} ", f"is {train} ")
        verb = "is" if overlap.count == 1 else "are"
        parts.append(f"{overlap.count} of the {held_total} pairs {held} {verb} also in training split {train!r} "
                     f"({examples}): the model trains on them, so the held-out figures flatter it")
    if not parts:
        return None
    return "; ".join(parts) + ". orpo-dist keeps every row: remove the copies if they are not meant"


def _examples(found: Repeats, copy: str, relation: str) -> str:
    named = ", ".join(f"{copy}{where} {relation}{first}" for where, first in found.examples)
    return named + (", ..." if found.count > len(found.examples) else "")

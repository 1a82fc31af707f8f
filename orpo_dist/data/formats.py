"""Row formats: one `Format` entry each in FORMATS (its columns, how it is recognised, how a row
becomes a `Pair`, when to name it to a user); the CLI choices, the recipe check, format detection
and the messages are all read from that table, so adding a format is one entry (CONTRIBUTING.md).

- standard:       prompt / chosen / rejected strings
- conversational: lists of {role, content} messages; without a prompt, chosen/rejected are whole
                  conversations sharing everything but their final assistant message
- hh:             HH-RLHF transcripts in chosen / rejected only (see hh.py)
- sharegpt:       `conversations` = [{from, value}, ...] as the prompt; chosen/rejected one
                  {from, value} message or a string
Any of them can come under other column names through `dataset_columns`. Pure Python: the
launching layer reads the table (recipe.py) without the rest of the data layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from . import hh
from .errors import (
    BAD_MESSAGES,
    EMPTY_ANSWER,
    EMPTY_PROMPT,
    IDENTICAL,
    MISSING_VALUE,
    NON_STRING,
    NON_STRING_PROMPT,
    BadRowError,
    DataUnusable,
)

# Columns that name a pair's category; the first one a dataset has is carried to the held-out file
# and grouped by `orpo-dist eval`.
CATEGORY_COLUMNS = ("category", "source")
AUTO = "auto"  # dataset_format's default: detect the format from the data
FIELDS = ("prompt", "chosen", "rejected", "conversations")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "bot": "assistant", "chatgpt": "assistant", "system": "system",
}  # fmt: skip
# Column names that usually mean prompt/chosen/rejected, for the hint in the missing-column error.
SYNONYMS = {
    "prompt": ["question", "instruction", "input", "query", "context", "history", "prompt_text"],
    "chosen": ["response_j", "good", "preferred", "accepted", "better", "winner", "positive", "pos", "win"],
    "rejected": ["response_k", "bad", "dispreferred", "worse", "loser", "negative", "neg", "lose"],
}
_SAMPLE = 200


@dataclass
class Pair:
    prompt: str | list[dict[str, str]]  # a string only for standard rows (kept verbatim without a template)
    chosen: str
    rejected: str


# ---------------------------------------------------------------- columns and detection


def column_map(mapping: dict[str, str] | None) -> dict[str, str]:
    """field -> source column, for every field."""
    mapping = dict(mapping or {})
    unknown = [k for k in mapping if k not in FIELDS]
    if unknown:
        raise UserError(
            f"dataset_columns: unknown field(s) {', '.join(map(repr, unknown))}; it maps "
            "prompt/chosen/rejected (and conversations, for sharegpt) to your column names, "
            "e.g. --dataset_columns prompt=question,chosen=good,rejected=bad"
        )
    return {f: str(mapping.get(f, f)) for f in FIELDS}


class Sample:
    """What `auto` looks at: the columns present (through dataset_columns) and the kinds of values
    in the first rows."""

    def __init__(self, rows: list[dict], columns: list[str], cols: dict[str, str]):
        self.rows, self.present, self.cols = rows[:_SAMPLE], set(columns), cols

    def has(self, *fields: str) -> bool:
        return all(self.cols[f] in self.present for f in fields)

    def values(self, field: str) -> list:
        return [r[self.cols[field]] for r in self.rows if r.get(self.cols[field]) is not None]

    def kind(self, field: str) -> str | None:
        """The most common type name of the field's values (None: no value)."""
        kinds = Counter(type(v).__name__ for v in self.values(field))
        return kinds.most_common(1)[0][0] if kinds else None


def detect_format(rows: list[dict], columns: list[str], cols: dict[str, str], forced: str = AUTO) -> str:
    """The format's name: the forced one if its columns are there, else the first entry of FORMATS
    that recognises the data."""
    sample = Sample(rows, columns, cols)
    if forced not in (AUTO, None, ""):
        if forced not in FORMATS:
            raise UserError(f"dataset_format must be {AUTO} or one of {', '.join(FORMATS)}, got {forced!r}")
        missing = [f for f in FORMATS[forced].required if not sample.has(f)]
        if missing:
            raise missing_columns(missing, columns, cols, forced)
        return forced
    found = next((f.name for f in FORMATS.values() if f.detects(sample)), None)
    if found:
        return found
    needed = FORMATS[FALLBACK].required
    raise missing_columns([f for f in needed if not sample.has(f)], columns, cols, FALLBACK)


def missing_columns(missing: list[str], columns: list[str], cols: dict[str, str], fmt: str) -> DataUnusable:
    named = [f"'{cols[f]}' (mapped to {f} by dataset_columns)" if cols[f] != f else f"'{f}'" for f in missing]
    needed = FORMATS[fmt].required
    suggestion = _suggest(needed, columns, cols)
    cli = ",".join(f"{k}={v}" for k, v in suggestion.items())
    yaml = ", ".join(f"{k}: {v}" for k, v in suggestion.items())
    return DataUnusable(
        f"the dataset has no column {_either(named)}; the {FORMATS[fmt].label} format needs "
        f"{', '.join(needed)}.\n"
        f"  Columns present: {', '.join(columns) if columns else '(none)'}.\n"
        f"  Map your columns onto {'/'.join(needed)}:\n"
        f"    --dataset_columns {cli}\n"
        f"    or in the YAML recipe: dataset_columns: {{{yaml}}}\n"
        f"  ({'; '.join(f'{f.hint}: --dataset_format {f.name}' for f in FORMATS.values() if f.hint)})"
    )


def split_lacks_columns(split: str, columns: list[str], fmt: str, cols: dict[str, str], train: str,
                        origin: str) -> DataUnusable | None:
    """A split other than the training one lacks columns the training split's format needs: every
    row of it would be bad for the same reason, so the split is refused in one line naming the
    columns, rather than row by row. (dataset_columns maps every split alike, so the fix is to rename.)"""
    needed_fields = FORMATS[fmt].required
    missing = [f for f in needed_fields if cols[f] not in columns]
    if not missing:
        return None
    needed = ", ".join(cols[f] + (f" (for {f})" if cols[f] != f else "") for f in needed_fields)
    guesses = _suggest(needed_fields, columns, cols)
    renames = [f"{guesses[f]} to {cols[f]}" for f in missing if guesses[f] != "YOUR_COLUMN"]
    where = f" ({origin})" if origin and origin != "(not read)" else ""
    return DataUnusable(
        f"split {split!r}{where} has columns {', '.join(columns)}; it needs {needed}, as split {train!r} is "
        f"read in the {FORMATS[fmt].label} format. Give every split the same column names"
        + (f": rename {', '.join(renames)}" if renames else "")
    )


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _suggest(needed, columns, cols) -> dict[str, str]:
    taken = {cols[f] for f in needed if cols[f] in columns}
    free = [c for c in columns if c not in taken]
    out = {}
    for f in needed:
        if cols[f] in columns:
            if cols[f] != f:
                out[f] = cols[f]
            continue
        lowered = {c.lower(): c for c in free}
        guess = next((c for c in free if f in c.lower()), None)
        guess = guess or next((lowered[s] for s in SYNONYMS.get(f, []) if s in lowered), None)
        if guess:
            free.remove(guess)
        out[f] = guess or "YOUR_COLUMN"
    return out


# ---------------------------------------------------------------- rows


def to_pair(row: dict[str, Any], fmt: str, cols: dict[str, str]) -> Pair:
    """The row as a Pair, or BadRowError saying what is wrong with it."""
    get = {f: row.get(cols[f]) for f in FIELDS}
    for f in FORMATS[fmt].required:
        if get[f] is None:
            raise BadRowError(MISSING_VALUE, f"{f} is missing or null")
    return _checked(FORMATS[fmt].convert(get))


def _require_string(value, name) -> None:
    if not isinstance(value, str):
        raise BadRowError(NON_STRING, f"{name} is a {type(value).__name__}, expected a string")


def _standard(get: dict[str, Any]) -> Pair:
    prompt, chosen, rejected = get["prompt"], get["chosen"], get["rejected"]
    _require_string(chosen, "chosen")
    _require_string(rejected, "rejected")
    if not isinstance(prompt, str):
        raise BadRowError(NON_STRING_PROMPT, f"prompt is a {type(prompt).__name__}, expected a string")
    return Pair(prompt, chosen, rejected)


def _content(value, where: str) -> str:
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)  # [{"type": "text", "text": ...}] parts
    if not isinstance(value, str):
        raise BadRowError(BAD_MESSAGES, f"{where} content is a {type(value).__name__}, expected a string")
    return value


def _message(m, where: str) -> dict[str, str]:
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise BadRowError(BAD_MESSAGES, f"{where} is not a {{role, content}} message")
    if m["role"] not in ROLES:
        raise BadRowError(BAD_MESSAGES, f"{where} has role {m['role']!r}; expected one of {', '.join(ROLES)}")
    return {"role": m["role"], "content": _content(m["content"], where)}


def _messages(value, name: str, default_role: str) -> list[dict[str, str]]:
    """A message list from a list of messages, one message, or a plain string."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        return [_message(value, name)]
    if isinstance(value, list):
        return [_message(m, f"{name}[{i}]") for i, m in enumerate(value)]
    raise BadRowError(NON_STRING, f"{name} is a {type(value).__name__}, expected messages or a string")


def _conversational(get: dict[str, Any]) -> Pair:
    prompt, chosen, rejected = get["prompt"], get["chosen"], get["rejected"]
    chosen_msgs = _messages(chosen, "chosen", "assistant")
    rejected_msgs = _messages(rejected, "rejected", "assistant")
    for name, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if not msgs:
            raise BadRowError(EMPTY_ANSWER, f"{name} is an empty list")
    if len(chosen_msgs) > 1 or len(rejected_msgs) > 1:
        # Whole conversations: the prompt is what they share before the final message.
        if chosen_msgs[:-1] != rejected_msgs[:-1]:
            raise BadRowError(
                BAD_MESSAGES, "chosen and rejected conversations differ before their final message"
            )
        prompt_msgs = chosen_msgs[:-1]
    elif prompt is None:
        raise BadRowError(
            MISSING_VALUE, "no prompt: chosen/rejected hold a single message and the prompt is missing"
        )
    else:
        prompt_msgs = _messages(prompt, "prompt", "user")
    for name, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if msgs[-1]["role"] != "assistant":
            raise BadRowError(
                BAD_MESSAGES, f"the {name} answer is a {msgs[-1]['role']!r} message, expected 'assistant'"
            )
    return Pair(prompt_msgs, chosen_msgs[-1]["content"], rejected_msgs[-1]["content"])


def _sharegpt_message(m, where: str) -> dict[str, str]:
    if isinstance(m, dict) and "role" in m and "from" not in m:
        return _message(m, where)
    if not isinstance(m, dict) or "from" not in m or "value" not in m:
        raise BadRowError(BAD_MESSAGES, f"{where} is not a {{from, value}} message")
    role = SHAREGPT_ROLES.get(str(m["from"]).lower())
    if role is None:
        raise BadRowError(
            BAD_MESSAGES, f"{where} is from {m['from']!r}; expected human, gpt or system"
        )
    return {"role": role, "content": _content(m["value"], where)}


def _sharegpt_answer(value, name: str) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        message = _sharegpt_message(value, name)
        if message["role"] != "assistant":
            raise BadRowError(BAD_MESSAGES, f"{name} is a {message['role']!r} message, expected gpt")
        return message["content"]
    raise BadRowError(NON_STRING, f"{name} is a {type(value).__name__}, expected one {{from, value}} message or a string")


def _sharegpt(get: dict[str, Any]) -> Pair:
    conversations, chosen, rejected = get["conversations"], get["chosen"], get["rejected"]
    if not isinstance(conversations, list):
        raise BadRowError(BAD_MESSAGES, f"conversations is a {type(conversations).__name__}, expected a list")
    prompt = [_sharegpt_message(m, f"conversations[{i}]") for i, m in enumerate(conversations)]
    return Pair(prompt, _sharegpt_answer(chosen, "chosen"), _sharegpt_answer(rejected, "rejected"))


def _hh(get: dict[str, Any]) -> Pair:
    for f in ("chosen", "rejected"):
        _require_string(get[f], f)
    return Pair(*hh.split_pair(get["chosen"], get["rejected"]))


def _checked(pair: Pair) -> Pair:
    if isinstance(pair.prompt, str):
        if not pair.prompt.strip():
            raise BadRowError(EMPTY_PROMPT, "prompt is empty")
    else:
        if not any(m["content"].strip() for m in pair.prompt if m["role"] != "system"):
            raise BadRowError(EMPTY_PROMPT, "the prompt has no non-empty user message")
        if pair.prompt[-1]["role"] not in ("user", "tool"):
            raise BadRowError(
                BAD_MESSAGES, f"the prompt ends with a {pair.prompt[-1]['role']!r} message; it must end with the user's turn"
            )
    for name in ("chosen", "rejected"):
        if not getattr(pair, name).strip():
            raise BadRowError(EMPTY_ANSWER, f"{name} is empty")
    if pair.chosen.strip() == pair.rejected.strip():
        raise BadRowError(IDENTICAL, "chosen and rejected are the same text")
    return pair


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Format:
    name: str
    description: str  # what its rows hold, as messages name it
    required: tuple[str, ...]  # the FIELDS every row needs (their columns through dataset_columns)
    detects: Callable[[Sample], bool]  # `auto` tries the entries in table order
    convert: Callable[[dict[str, Any]], Pair]  # field -> value to a Pair; BadRowError for a bad row
    hint: str = ""  # data that `auto` cannot tell, named where columns are missing

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description})"


def _looks_like_hh(sample: Sample) -> bool:
    values = [v for v in sample.values("chosen") if isinstance(v, str)]
    return bool(values) and sum(map(hh.looks_like_hh, values)) * 2 > len(values)


# In detection order: sharegpt's `conversations` first; message lists before strings; hh, which
# only its text tells apart, last.
FORMATS = {f.name: f for f in (
    Format("sharegpt", "conversations of {from, value} + chosen/rejected", ("conversations", "chosen", "rejected"),
           lambda s: s.has("conversations", "chosen", "rejected"), _sharegpt, hint="ShareGPT `conversations`"),
    Format("conversational", "{role, content} messages", ("chosen", "rejected"),
           lambda s: s.has("chosen", "rejected") and (s.kind("chosen") in ("list", "dict") or (
               s.kind("chosen") == "str" and s.has("prompt") and s.kind("prompt") == "list")),
           _conversational),
    Format("standard", "prompt/chosen/rejected strings", ("prompt", "chosen", "rejected"),
           lambda s: s.has("prompt", "chosen", "rejected"), _standard),
    Format("hh", "HH-RLHF transcripts in chosen/rejected", ("chosen", "rejected"),
           lambda s: s.has("chosen", "rejected") and _looks_like_hh(s), _hh,
           hint="HH-RLHF transcripts with only chosen/rejected"),
)}  # fmt: skip
FORMAT_CHOICES = (AUTO, *FORMATS)
FALLBACK = "standard"  # the format whose columns a user is asked for when no entry recognises the data

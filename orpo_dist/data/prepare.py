"""The pipeline: load -> detect format -> convert and check every row -> render -> token checks ->
held-out split and caps -> `datasets.Dataset`s of prompt/chosen/rejected strings."""

from __future__ import annotations

import math
import random
import shlex
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from ..errors import UserError
from ..model_rules import DEFAULT_MAX_LENGTH
from .duplicates import across, fingerprint, within
from .formats import AUTO, CATEGORY_COLUMNS, FALLBACK, FORMATS, column_map, detect_format, split_lacks_columns, to_pair
from .render import Renderer
from .errors import STRICT_LIST, BadRowError, DataUnusable
from .findings import BadRow, DataReport, SplitReport, format_bad_rows
from .sources import RawSplit, load_splits
from .split_slices import check_disjoint, parse_split
from .tokenize import measure

Triple = tuple[str, str, str]


class Row(NamedTuple):
    """A kept row: prompt, chosen, rejected rendered (all the trainer sees), and what the checks use."""

    prompt: str
    chosen: str
    rejected: str
    category: str | None  # None without one; only the held-out file keeps it, for eval's per-category figures
    where: str  # "line 7": names the row in the duplicate warning
    key: bytes  # duplicates.fingerprint of the row as read


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset
    eval: Any | None  # datasets.Dataset | None
    report: DataReport
    eval_categories: list[str] | None = None  # per held-out pair, when the data names categories

    def heldout_rows(self) -> list[dict]:
        """The held-out pairs as written to heldout.jsonl (with their category, if any)."""
        rows = [dict(r) for r in self.eval] if self.eval is not None else []
        if self.eval_categories:
            for row, category in zip(rows, self.eval_categories):
                row["category"] = category
        return rows


def analyze(
    args,
    tokenizer,
    max_length: int | None,
    splits: list[str] | None = None,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
) -> tuple[dict[str, list[Row]], DataReport]:
    """Good rows per split, and the report of everything found. `splits`: the splits to read
    (those that exist); None = every split. The format is detected on the training split.
    `max_prompt_length`: long prompts are cut to their last tokens (counted) instead of dropped."""
    cols = column_map(args.dataset_columns)
    source = str(args.dataset_name)
    train_name, test_name = args.dataset_train_split, getattr(args, "dataset_test_split", None)
    check_disjoint(train_name, test_name)
    ranges = [n for n in (train_name, test_name) if n and parse_split(n)[1] is not None]
    raw_splits = load_splits(args.dataset_name, args.dataset_config, splits, default_split=train_name, ranges=ranges)
    if train_name not in raw_splits:
        raise UserError(
            f"dataset {source} has no split {train_name!r}; its splits: {', '.join(raw_splits)}.\n"
            f"  Pick the training split with --dataset_train_split NAME (YAML: dataset_train_split: NAME)."
        )
    cut = {parse_split(r)[0] for r in ranges}  # a split read for its row ranges is not itself a split to use
    chosen_splits = [s for s in raw_splits if (s in splits if splits is not None else s not in cut)]
    train_raw = raw_splits[train_name]
    if not train_raw.rows:
        raise DataUnusable(f"split {train_name!r} of dataset {source} is empty: there is nothing to train on.")
    if _dicts(train_raw):
        fmt = detect_format(_dicts(train_raw), train_raw.columns, cols, args.dataset_format)
    else:  # not one readable row: report them all rather than "no columns"
        fmt = args.dataset_format if args.dataset_format in FORMATS else FALLBACK
    if tokenizer is not None and tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos_token: ORPO ends every answer with it. Set tokenizer.eos_token.")
    renderer = Renderer(tokenizer, args.apply_chat_template)
    report = DataReport(source=source, format=fmt, rendering=renderer.name, max_length=max_length,
                        max_prompt_length=max_prompt_length)
    good = {}
    for name in chosen_splits:
        if name == test_name != train_name and _dicts(raw_splits[name]):
            # Else every row of it is "missing value", row by row, and the columns it has go unnamed.
            lacking = split_lacks_columns(name, raw_splits[name].columns, fmt, cols, train_name,
                                          raw_splits[name].origin)
            if lacking:
                raise lacking
        good[name], report.splits[name] = _process(raw_splits[name], fmt, cols, renderer, tokenizer, max_length,
                                                   max_prompt_length, max_completion_length)
    report.notes.extend(note for name in chosen_splits for note in raw_splits[name].notes)
    report.train_split = train_name
    if test_name in good and test_name != train_name:
        report.held_out_split, report.held_out_total = test_name, len(good[test_name])
        report.overlap = across(good[test_name], good[train_name])
    if args.apply_chat_template and not renderer.use_template and tokenizer is not None:
        report.notes.append("the tokenizer has no chat template: rows are rendered as plain text")
    return good, report


def _dicts(raw: RawSplit) -> list[dict]:
    return [r.value for r in raw.rows if isinstance(r.value, dict)]


def _process(raw: RawSplit, fmt, cols, renderer, tokenizer, max_length,
             max_prompt_length, max_completion_length=None) -> tuple[list[Row], SplitReport]:
    report = SplitReport(raw.name, total=len(raw.rows))
    bad: list[tuple[int, BadRow]] = []
    pending: list[tuple[int, Triple, str | None, bytes]] = []  # (index in raw.rows, rendered, category, key)
    for index, row in enumerate(raw.rows):
        try:
            if isinstance(row.value, BadRowError):
                raise row.value
            pair = to_pair(row.value, fmt, cols)
            pending.append((index, renderer(pair), _category(row.value),
                            fingerprint(pair.prompt, pair.chosen, pair.rejected)))
        except BadRowError as err:
            bad.append((index, BadRow(raw.name, row.where, row.number, err.reason, err.detail)))
    good: list[Row] = []
    lengths = None
    if tokenizer is not None:
        lengths = measure(tokenizer, [triple for _, triple, _, _ in pending], max_length, max_prompt_length,
                          max_completion_length)
    for k, (index, triple, category, key) in enumerate(pending):
        if lengths is not None:
            result = lengths[k]
            if isinstance(result, BadRowError):
                row = raw.rows[index]
                bad.append((index, BadRow(raw.name, row.where, row.number, result.reason, result.detail)))
                continue
            report.prompt_tokens.append(result.prompt)
            report.chosen_tokens.append(result.chosen)
            report.rejected_tokens.append(result.rejected)
            report.prompts_cut += result.prompt_cut
            if max_length is not None and result.prompt + max(result.chosen, result.rejected) > max_length:
                report.truncated += 1
        good.append(Row(*triple, category, raw.rows[index].where, key))
    report.bad = [b for _, b in sorted(bad, key=lambda item: item[0])]
    report.duplicates = within(good)
    return good, report


def prepare_datasets(args, tokenizer, max_length: int | None, seed: int, log: Callable[[str], Any] = print,
                     max_prompt_length: int | None = None, max_completion_length: int | None = None) -> PreparedData:
    """Load `args.dataset_name`, keep the rows ORPO can train on, and return train/eval Datasets of
    prompt/chosen/rejected strings. Bad rows are dropped with one line per split on `log`, or
    refused with `args.dataset_strict`. Raises UserError for anything the user must fix.
    With `max_prompt_length`, rows whose prompt is too long are counted as cut, not dropped."""
    from datasets import Dataset

    if getattr(args, "dataset_streaming", False):
        raise UserError(
            "dataset_streaming is not supported by orpo-dist: every row is checked before training. "
            "Remove `dataset_streaming` from the recipe."
        )
    train_name, test_name = args.dataset_train_split, args.dataset_test_split or None
    wanted = [train_name] + ([test_name] if test_name and test_name != train_name else [])
    good, report = analyze(args, tokenizer, max_length, splits=wanted, max_prompt_length=max_prompt_length,
                           max_completion_length=max_completion_length)
    source = report.source
    hint = check_command(args, max_length, max_prompt_length)
    log(f"data: {source}: format {FORMATS[report.format].label}, rendered as {report.rendering}")
    for note in report.notes:
        log(f"data: note: {note}")
    for name, split in report.splits.items():
        if split.bad:
            log(f"data: {name}: {split.dropped_line(hint)}")
        if split.prompts_cut:
            log(f"data: {name}: {split.cut_line(max_prompt_length)}")
        if split.truncated:
            pairs = "1 pair exceeds" if split.truncated == 1 else f"{split.truncated} pairs exceed"
            log(f"data: {name}: {pairs} max_length={max_length}; their answers will be cut")
    bad_rows = report.bad_rows
    if args.dataset_strict and bad_rows:
        raise DataUnusable(
            f"dataset {source} has {len(bad_rows)} bad rows and dataset_strict is set:\n"
            + "\n".join(format_bad_rows(bad_rows, STRICT_LIST))
            + f"\n  Fix these rows, or drop dataset_strict to skip them (see `{hint}`)."
        )
    for name, split in report.splits.items():
        if not good[name]:
            raise no_good_rows(source, split, hint)

    train = good[train_name]
    if test_name in good:
        evaluation, held_out = good[test_name], f"split {test_name!r}"
    else:
        train, evaluation = _hold_out(train, args.eval_split_size, seed)
        held_out = f"{args.eval_split_size:g} of the rows held out with seed {seed}"
    train = _cap(train, args.max_train_samples, seed)
    evaluation = _cap(evaluation, args.max_eval_samples, seed) if evaluation else None
    if evaluation is None and args.eval_split_size > 0 and test_name not in good:
        log(f"data: too few rows to hold out {args.eval_split_size:g} for evaluation: no eval set")
    log(
        f"data: {len(train)} training pairs"
        + (f", {len(evaluation)} eval pairs ({held_out})" if evaluation else ", no eval set")
    )
    # The pairs actually trained on and held out, after the split and the caps.
    report.overlap = across(evaluation, train) if evaluation else None
    report.held_out_split = test_name if test_name in good else None
    report.held_out_total = len(evaluation or [])
    warning = report.duplicates_warning()
    if warning:
        log(f"data: warning: {warning}")
    categories = [r.category for r in evaluation] if evaluation else None
    if not categories or any(c is None for c in categories):
        categories = None  # figures per category need every pair to have one
    return PreparedData(_to_dataset(Dataset, train), _to_dataset(Dataset, evaluation) if evaluation else None, report,
                        categories)


def check_command(args, max_length: int | None, max_prompt_length: int | None = None) -> str:
    """The `orpo-dist data check` command that shows the same findings."""
    words = ["orpo-dist", "data", "check", str(args.dataset_name)]
    if args.dataset_columns:
        words += ["--dataset_columns", ",".join(f"{k}={v}" for k, v in dict(args.dataset_columns).items())]
    if args.dataset_format not in (AUTO, None):
        words += ["--format", args.dataset_format]
    if args.dataset_config:
        words += ["--config", args.dataset_config]
    if args.dataset_train_split != "train":
        words += ["--train-split", args.dataset_train_split]
    if max_length != DEFAULT_MAX_LENGTH:
        words += ["--max-length", str(max_length or 0)]
    if max_prompt_length:
        words += ["--max-prompt-length", str(max_prompt_length)]
    if not args.apply_chat_template:
        words += ["--no-chat-template"]
    return " ".join(shlex.quote(w) for w in words)


def no_good_rows(source: str, split: SplitReport, hint: str) -> DataUnusable:
    if split.total == 0:
        return DataUnusable(f"split {split.name!r} of dataset {source} is empty: there is nothing to train on.")
    return DataUnusable(
        f"split {split.name!r} of dataset {source} has no usable rows: all {split.total} are bad "
        f"({split.reasons_text()}). The first ones:\n"
        + "\n".join(format_bad_rows(split.bad, 5))
        + f"\n  See every reason with `{hint}`."
    )


def _category(value) -> str | None:
    if isinstance(value, dict):
        for column in CATEGORY_COLUMNS:
            if isinstance(value.get(column), str) and value[column]:
                return value[column]
    return None


def _hold_out(rows: list[Row], size: float, seed: int) -> tuple[list[Row], list[Row] | None]:
    n_eval = min(len(rows) - 1, math.ceil(len(rows) * size)) if size > 0 else 0
    if n_eval <= 0:
        return rows, None
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def _cap(rows: list[Row], limit: int | None, seed: int) -> list[Row]:
    if limit is None or limit >= len(rows):
        return rows
    if limit <= 0:
        raise UserError(f"max_train_samples/max_eval_samples must be positive, got {limit}")
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    return [rows[i] for i in order[:limit]]


def _to_dataset(Dataset, rows: list[Row]):
    return Dataset.from_dict({"prompt": [r.prompt for r in rows], "chosen": [r.chosen for r in rows],
                              "rejected": [r.rejected for r in rows]})

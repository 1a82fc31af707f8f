"""`orpo-dist data check DATASET`: can this data train, and what is wrong with it?

Prints the format found, rows per split (total/good/bad), token-length percentiles and every bad
row with its line/row number and reason. Exit 0 when the data can train, 1 when it cannot (a
missing column, no good rows, or --strict with bad rows), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os

from ..arg_types import whole
from ..builtin_models import DEMO_MODEL
from ..errors import UserError
from ..model_rules import DEFAULT_MAX_LENGTH
from .formats import AUTO, FORMAT_CHOICES, FORMATS

DEFAULT_TOKENIZER = DEMO_MODEL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orpo-dist data",
        description="Inspect a preference dataset the way `orpo-dist train` will read it.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="report format, row counts, token lengths and bad rows; exit 1 if the data cannot train",
        description=(
            "Read DATASET exactly as training will (same loader, format detection, row checks,\n"
            "chat template and token limits) and report what was found.\n"
            "Exit status: 0 = can train, 1 = cannot (missing column, no usable rows, or --strict\n"
            "with bad rows), 2 = bad arguments."
        ),
        epilog=(
            "DATASET: a .jsonl/.jsonl.gz/.json/.json.gz/.parquet/.csv file, a folder of such files "
            "(train.jsonl, test.jsonl, ...), a `save_to_disk` folder, or a Hub id (needs network).\n"
            "examples:\n"
            "  orpo-dist data check ../shared/data/hh-rlhf-harmless-base/test.jsonl.gz\n"
            "  orpo-dist data check pairs.csv --dataset_columns prompt=question,chosen=good,rejected=bad\n"
            "  orpo-dist data check my_folder --format sharegpt --max-length 2048 --strict"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("dataset", metavar="DATASET", help="file, folder, or Hub id")
    check.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        metavar="PATH_OR_ALIAS",
        help=f"tokenizer for the chat template and token counts (default: {DEFAULT_TOKENIZER}, the offline demo model)",
    )
    check.add_argument(
        "--max-length",
        "--max_length",
        dest="max_length",
        type=whole(0),
        default=DEFAULT_MAX_LENGTH,
        metavar="N",
        help=f"ORPO max_length: prompts of N tokens or more are bad rows unless --max-prompt-length cuts them "
        f"(default: {DEFAULT_MAX_LENGTH}; 0 = no limit)",
    )
    check.add_argument(
        "--max-prompt-length",
        "--max_prompt_length",
        dest="max_prompt_length",
        type=whole(1),
        metavar="N",
        help="TRL 0.x's max_prompt_length: a row that does not fit keeps its prompt's last N tokens and trains "
        "(reported as cut) instead of being a bad row",
    )
    check.add_argument(
        "--dataset_columns",
        "--dataset-columns",
        "--columns",
        dest="dataset_columns",
        metavar="MAP",
        help="map your column names, e.g. prompt=question,chosen=good,rejected=bad (or a JSON object)",
    )
    check.add_argument(
        "--format",
        "--dataset_format",
        dest="format",
        default=AUTO,
        choices=FORMAT_CHOICES,
        help="row format (default: auto-detect)",
    )
    check.add_argument(
        "--config", "--dataset_config", dest="config", metavar="NAME", help="Hub dataset configuration"
    )
    check.add_argument(
        "--train-split",
        "--dataset_train_split",
        dest="train_split",
        default="train",
        metavar="NAME",
        help="the training split (default: train; a single file is read as this split)",
    )
    check.add_argument(
        "--test-split",
        "--dataset_test_split",
        dest="test_split",
        default="test",
        metavar="NAME",
        help="the evaluation split, if the data has one (default: test)",
    )
    check.add_argument("--strict", action="store_true", help="any bad row makes the data fail (exit 1)")
    check.add_argument(
        "--no-chat-template", action="store_true", help="render plain text even if the tokenizer has a chat template"
    )
    check.add_argument(
        "--show", type=whole(0), default=200, metavar="N", help="list at most N bad rows (default: 200)"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "check":
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    return check(args)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from ..builtin_models import resolve
    from ..hub_access import check_hub_answers

    check_hub_answers(resolve(name), "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(resolve(name))
    except UserError:
        raise
    except Exception as err:
        raise UserError(
            f"cannot load tokenizer {name!r} ({type(err).__name__}: {str(err)[:300]}).\n"
            f"  Pass --tokenizer with a local model folder, or the built-in alias {DEFAULT_TOKENIZER}."
        ) from None


def check(args) -> int:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from ..recipe import DataArguments, check_prompt_length
    from .prepare import analyze
    from .errors import DataUnusable
    from .findings import format_bad_rows

    data_args = DataArguments(
        dataset_name=args.dataset,
        dataset_config=args.config,
        dataset_train_split=args.train_split,
        dataset_test_split=args.test_split,
        dataset_columns=args.dataset_columns,
        dataset_format=args.format,
        dataset_strict=args.strict,
        apply_chat_template=not args.no_chat_template,
    )
    max_length = args.max_length if args.max_length and args.max_length > 0 else None
    check_prompt_length(args.max_prompt_length, max_length)
    tokenizer = load_tokenizer(args.tokenizer)
    print(f"dataset:   {args.dataset}")
    try:
        _, report = analyze(data_args, tokenizer, max_length, max_prompt_length=args.max_prompt_length)
    except DataUnusable as err:
        print(f"\nCANNOT TRAIN: {err}")
        return 1

    print(f"format:    {FORMATS[report.format].label}" + (" (detected)" if args.format == AUTO else " (forced)"))
    print(f"rendering: {report.rendering} ({args.tokenizer}); max_length {max_length or 'none'}"
          + (f", max_prompt_length {args.max_prompt_length}" if args.max_prompt_length else ""))
    for note in report.notes:
        print(f"note:      {note}")
    for split in report.splits.values():
        print()
        line = f"split {split.name}: {split.total} rows, {split.good} good, {len(split.bad)} bad"
        print(line + (f" ({split.reasons_text()})" if split.bad else ""))
        table = split.length_table()
        if table:
            print(f"  {'tokens (good rows)':<22}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}")
            for name, stats in table:
                print(f"  {name:<22}" + "".join(f"{stats[k]:>7}" for k in ("p50", "p90", "p99", "max")))
        if split.prompts_cut:
            print(f"  {split.cut_line(args.max_prompt_length)}")
        if split.truncated:
            pairs = "1 pair is" if split.truncated == 1 else f"{split.truncated} pairs are"
            print(f"  {pairs} longer than max_length {max_length}: their answers will be cut")
    bad = report.bad_rows
    if bad:
        print(f"\nbad rows ({len(bad)}):")
        print("\n".join(format_bad_rows(bad, max(0, args.show))))
    warning = report.duplicates_warning()
    if warning:
        print(f"\nwarning: {warning}")
    return _verdict(report, args, data_args)


def _verdict(report, args, data_args) -> int:
    train, test = report.splits[data_args.dataset_train_split], report.splits.get(data_args.dataset_test_split)
    print()
    empty = [s.name for s in (train, test) if s is not None and s.good == 0]
    if empty:
        print(f"CANNOT TRAIN: no usable rows in split {', '.join(empty)}.")
        return 1
    bad = report.bad_rows
    if args.strict and bad:
        print(f"CANNOT TRAIN with --strict: {len(bad)} bad rows (fix them, or drop --strict to skip them).")
        return 1
    dropped = f"; the {len(bad)} bad rows will be dropped (--strict refuses them)" if bad else ""
    usable = f"OK: {train.good} usable pairs in {train.name}" + (f", {test.good} in {test.name}" if test else "")
    print(usable + dropped + ".")
    return 0

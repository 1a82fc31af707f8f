"""`orpo-dist data check`: what it prints and its exit status (0 can train, 1 cannot, 2 bad args)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orpo_dist.cli import main

from .helpers import write_jsonl

HH_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
GOOD = {"prompt": "Is water wet?", "chosen": "Yes, it is.", "rejected": "Banana."}


def check(capsys, *argv, tokenizer=None):
    args = ["data", "check", *map(str, argv)]
    if tokenizer is not None:
        args += ["--tokenizer", str(tokenizer)]
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(n):
    return [dict(GOOD, prompt=f"Question number {i}?") for i in range(n)]


def test_good_file_reports_format_counts_and_lengths(tmp_path, capsys, demo_model_dir, demo_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", rows(20))
    code, out, _ = check(capsys, path, tokenizer=demo_model_dir)
    assert code == 0
    assert "format:    standard (prompt/chosen/rejected strings) (detected)" in out
    assert "rendering: chat template" in out and "max_length 1024" in out
    assert "split train: 20 rows, 20 good, 0 bad" in out
    assert "bad rows" not in out and "OK: 20 usable pairs in train." in out
    # the percentile table holds the trainer's token counts
    header = next(line for line in out.splitlines() if "tokens (good rows)" in line)
    assert header.split()[-4:] == ["p50", "p90", "p99", "max"]
    lengths = sorted(
        len(demo_tokenizer(text, add_special_tokens=False)["input_ids"])
        for text in (
            demo_tokenizer.apply_chat_template(
                [{"role": "user", "content": r["prompt"]}], tokenize=False, add_generation_prompt=True
            )
            for r in rows(20)
        )
    )
    prompt_line = next(line for line in out.splitlines() if line.strip().startswith("prompt "))
    p50, p90, p99, top = map(int, prompt_line.split()[1:])
    assert (p50, p90, p99, top) == (lengths[9], lengths[17], lengths[19], lengths[19])  # nearest rank of 20
    assert p50 < top  # "Question number 10?" and up take one token more
    for name in ("chosen", "rejected", "prompt+longer answer"):
        assert any(line.strip().startswith(name) for line in out.splitlines())


def test_bad_rows_are_listed_and_strict_fails(tmp_path, capsys, demo_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", rows(5) + [dict(GOOD, chosen=""), "{broken", dict(GOOD, chosen="Banana.")])
    code, out, _ = check(capsys, path, tokenizer=demo_model_dir)
    assert code == 0
    assert "split train: 8 rows, 5 good, 3 bad (1 broken JSON, 1 empty answer, 1 identical answers)" in out
    assert "  train line 6: empty answer (chosen is empty)" in out
    assert "  train line 7: broken JSON" in out
    assert "  train line 8: identical answers" in out
    assert "the 3 bad rows will be dropped" in out
    code, out, _ = check(capsys, path, "--strict", tokenizer=demo_model_dir)
    assert code == 1 and "CANNOT TRAIN with --strict: 3 bad rows" in out


def test_bad_row_listing_is_capped(tmp_path, capsys, demo_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", rows(2) + [dict(GOOD, rejected="")] * 230)
    code, out, _ = check(capsys, path, tokenizer=demo_model_dir)
    assert code == 0
    listed = [line for line in out.splitlines() if ": empty answer (" in line]
    assert len(listed) == 200 and "... and 30 more bad rows" in out
    code, out, _ = check(capsys, path, "--show", "3", tokenizer=demo_model_dir)
    assert "... and 227 more bad rows" in out


def test_missing_column_exits_1_with_the_mapping_hint(tmp_path, capsys, demo_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "good": "a", "bad": "b"}])
    code, out, _ = check(capsys, path, tokenizer=demo_model_dir)
    assert code == 1
    assert "CANNOT TRAIN" in out and "Columns present: question, good, bad" in out
    assert "--dataset_columns prompt=question,chosen=good,rejected=bad" in out
    code, out, _ = check(
        capsys, path, "--dataset_columns", "prompt=question,chosen=good,rejected=bad", tokenizer=demo_model_dir
    )
    assert code == 0 and "OK: 1 usable pairs" in out


def test_no_good_rows_exits_1(tmp_path, capsys, demo_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", [dict(GOOD, chosen="")] * 3)
    code, out, _ = check(capsys, path, tokenizer=demo_model_dir)
    assert code == 1 and "CANNOT TRAIN: no usable rows in split train" in out


def test_max_length_and_format_options(tmp_path, capsys, demo_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", rows(3) + [dict(GOOD, prompt="long " * 100)])
    code, out, _ = check(capsys, path, "--max-length", "64", "--no-chat-template", tokenizer=demo_model_dir)
    assert code == 0 and "rendering: plain text" in out and "max_length 64" in out
    assert "train line 4: prompt too long (the prompt is 101 tokens, max_length is 64" in out
    code, out, _ = check(capsys, path, "--format", "sharegpt", tokenizer=demo_model_dir)
    assert code == 1 and "no column 'conversations'" in out


def test_usage_errors_exit_2_without_traceback(tmp_path, capsys):
    code, _, err = check(capsys, tmp_path / "nope.jsonl")
    assert code == 2 and "orpo-dist data: error: dataset" in err and "not found" in err
    code, _, err = check(capsys, write_jsonl(tmp_path / "d.jsonl", rows(1)), tokenizer=tmp_path / "no-tokenizer")
    assert code == 2 and "cannot load tokenizer" in err and "Traceback" not in err
    assert main(["data", "check", "--help"]) == 0  # main() returns argparse's status, it never exits
    help_text = capsys.readouterr().out
    for option in ("--tokenizer", "--max-length", "--dataset_columns", "--format", "--config", "--strict"):
        assert option in help_text
    assert main(["data"]) == 0 and "check" in capsys.readouterr().out


# CI always has shared/ beside the clone: there a missing file fails instead of skipping.
@pytest.mark.skipif(not HH_FILE.is_file() and not os.environ.get("CI"),
                    reason="../shared/data/hh-rlhf-harmless-base/test.jsonl.gz not present")
def test_real_hh_rlhf_file(capsys):
    code, out, _ = check(capsys, HH_FILE)  # default tokenizer: the demo model
    assert code == 0
    assert "format:    hh (HH-RLHF transcripts in chosen/rejected) (detected)" in out
    assert "split train: 2312 rows, 2303 good, 9 bad (5 malformed transcript, 4 empty answer)" in out
    for line in (87, 517, 926, 1104):
        assert f"train line {line}: empty answer" in out
    for line in (1255, 1689, 1951, 1953, 2037):
        assert f"train line {line}: malformed transcript" in out


def test_row_ranges_of_one_file_are_a_training_and_a_held_out_split(tmp_path, capsys, demo_model_dir):
    """`train[:12]` / `train[12:20]`: one file split by row number (the datasets library's split
    syntax), counted before bad rows are dropped, so the ranges are the file's own rows."""
    data = rows(20)
    data[3] = dict(GOOD, chosen="")  # a bad row inside the training range stays in that range
    path = write_jsonl(tmp_path / "d.jsonl", data)
    code, out, _ = check(capsys, path, "--train-split", "train[:12]", "--test-split", "train[12:20]",
                         tokenizer=demo_model_dir)
    assert code == 0, out
    assert "split train[:12]: 12 rows, 11 good, 1 bad" in out
    assert "split train[12:20]: 8 rows, 8 good, 0 bad" in out
    assert "train[:12] line 4: empty answer" in out
    assert "OK: 11 usable pairs in train[:12], 8 in train[12:20]" in out


@pytest.mark.parametrize("train, test, words", [
    ("train[:12]", "train[10:]", "share rows: the held-out pairs would be trained on"),
    ("train", "train[15:]", "share rows"),
    ("train[30:]", "test", "selects no rows: split 'train' has 20 rows"),
    ("train[5:2]", "test", "selects no rows: STOP must be above START"),
    ("train[a:]", "test", "is not a split name nor a row range"),
])
def test_row_ranges_that_overlap_or_select_nothing_are_refused(tmp_path, capsys, demo_model_dir, train, test, words):
    path = write_jsonl(tmp_path / "d.jsonl", rows(20))
    code, out, err = check(capsys, path, "--train-split", train, "--test-split", test, tokenizer=demo_model_dir)
    assert code == 2 and words in err and "Traceback" not in err, (out, err)

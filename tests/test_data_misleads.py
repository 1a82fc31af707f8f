"""Data that misleads silently (issue 31, class 6), and a data path that is a pipe: one table per
case class, each run as the user runs it (`orpo-dist data check ...`, `orpo-dist train ...`, in
this process), checked for the exit status, the one line with the right words, no traceback, and
the user's files unchanged. `train` never gets to its model here: the data is read, reported or
refused first, and the model loader is stubbed to stop the run where the model would load."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from contextlib import contextmanager

import pytest

from .helpers import TINY_RECIPE, check_refusal, files_of, jsonl_text, run_case

ROWS = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": f"A bad one {i}."} for i in range(6)]
STOPPED = "stopped where the model would load"


def _csv(rows) -> str:
    return "prompt,chosen,rejected\n" + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in rows)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.fixture
def train_stops_before_the_model(monkeypatch, tmp_path):
    """`orpo-dist train ARGS` on the tiny recipe, with the model loader stubbed to refuse: the data
    step runs for real (it comes first) and the model is never built."""
    import orpo_dist.model
    from orpo_dist.errors import UserError

    def stop(*args, **kwargs):
        raise UserError(STOPPED)

    monkeypatch.setattr(orpo_dist.model, "load_model", stop)
    return lambda *extra: ["train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "out", *extra]


def _one_line(text, start) -> str:
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


# ---------------------------------------------------------------- 1. UTF-16 text (PowerShell's Out-File)

ENCODING_CASES = [
    # (file name, bytes, words of the note)
    ("out-file.jsonl", jsonl_text(ROWS).encode("utf-16"), "out-file.jsonl is UTF-16 text"),  # FF FE, as Out-File writes
    ("big-endian.jsonl", b"\xfe\xff" + jsonl_text(ROWS).encode("utf-16-be"), "big-endian.jsonl is UTF-16 text"),
    ("out-file.csv", _csv(ROWS).encode("utf-16"), "out-file.csv is UTF-16 text"),
    ("array.json", json.dumps(ROWS, indent=1).encode("utf-16"), "array.json is UTF-16 text"),
    ("packed.jsonl.gz", gzip.compress(jsonl_text(ROWS).encode("utf-16")), "packed.jsonl.gz is UTF-16 text"),
    ("packed.csv.gz", gzip.compress(_csv(ROWS).encode("utf-16")), "packed.csv.gz is UTF-16 text"),
    ("utf32.jsonl", jsonl_text(ROWS).encode("utf-32"), "utf32.jsonl is UTF-32 text"),
    ("no-bom.jsonl", jsonl_text(ROWS).encode("utf-16-le"), "no-bom.jsonl is UTF-16 text without a byte-order mark"),
]


@pytest.mark.parametrize("name, data, note", ENCODING_CASES, ids=[c[0] for c in ENCODING_CASES])
def test_data_check_reads_utf16_like_utf8_and_says_so(tmp_path, capsys, name, data, note):
    path = _write(tmp_path / name, data)
    before = files_of(tmp_path)
    status, out, err = run_case(["data", "check", path], capsys)
    assert status == 0 and "Traceback" not in err, err[-2000:]
    assert "6 rows, 6 good, 0 bad" in out, out
    said = _one_line(out, "note:")
    assert note in said and "Save it as UTF-8" in said, said
    assert "Question 0?" not in said  # the note names the file, the rows are read
    assert files_of(tmp_path) == before


@pytest.mark.parametrize("name, data, note", ENCODING_CASES[:3], ids=[c[0] for c in ENCODING_CASES[:3]])
def test_train_reaches_the_rows_of_a_utf16_file(tmp_path, capsys, train_stops_before_the_model, name, data, note):
    path = _write(tmp_path / "data" / name, data)
    before = files_of(tmp_path / "data")
    status, out, err = run_case(train_stops_before_the_model("--dataset_name", path), capsys)
    check_refusal(status, err, [STOPPED])  # the data step passed: it stops at the model
    assert note in _one_line(out, "orpo-dist: data: note:")
    assert "5 training pairs, 1 eval pairs" in out, out
    assert files_of(tmp_path / "data") == before


UNDECODABLE_CASES = [
    # (file name, bytes, words of the one error line): a byte-order mark, then no UTF-16 (a lone surrogate)
    ("broken.jsonl", b"\xff\xfe" + '{"prompt": "'.encode("utf-16-le") + b"\x00\xd8" + b'"\x00}\x00',
     ["broken.jsonl starts as UTF-16 text but does not decode as UTF-16", "save it as UTF-8"]),
    ("broken.csv", b"\xff\xfe" + "prompt,chosen,rejected\n".encode("utf-16-le") + b"\x00\xd8a\x00",
     ["broken.csv: cannot read it as UTF-16 CSV", "save it as UTF-8 CSV"]),
]


@pytest.mark.parametrize("name, data, words", UNDECODABLE_CASES, ids=[c[0] for c in UNDECODABLE_CASES])
def test_text_that_is_not_the_utf16_it_claims_is_refused_in_one_line(tmp_path, capsys, name, data, words):
    path = _write(tmp_path / name, data)
    before = files_of(tmp_path)
    status, _, err = run_case(["data", "check", path], capsys)
    check_refusal(status, err, words)
    assert len(err.strip().splitlines()) == 1, err
    assert files_of(tmp_path) == before


# ---------------------------------------------------------------- 2. duplicate pairs, held-out pairs trained on

SPACED = [dict(ROWS[0], prompt="  Question 0?\n", chosen="A good  answer 0. ")]  # ROWS[0], but for whitespace


def _file_with(extra):
    return lambda t: _write(t / "pairs.jsonl", jsonl_text(ROWS + extra))


def _folder(train, test):
    def make(t):
        _write(t / "ds" / "train.jsonl", jsonl_text(train))
        _write(t / "ds" / "test.jsonl", jsonl_text(test))
        return t / "ds"
    return make


DUPLICATE_CASES = [
    # (case, data (tmp) -> path, words of the one warning line; None: no warning)
    ("exact copies in one file", _file_with([ROWS[0], ROWS[1]]),
     ["split 'train' has 2 duplicate pairs", "line 7 repeats line 1", "line 8 repeats line 2", "keeps every row"]),
    ("copies that differ in whitespace only", _file_with(SPACED),
     ["split 'train' has 1 duplicate pair (line 7 repeats line 1)"]),
    ("many copies: a few named", _file_with([ROWS[0]] * 5), ["5 duplicate pairs", "line 9 repeats line 1, ...)"]),
    ("test pairs that are training pairs", _folder(ROWS, [ROWS[3], {**ROWS[0], "prompt": "New?"}, ROWS[5]]),
     ["2 of the 3 pairs of split 'test' are also in training split 'train'", "test line 1 is train line 4",
      "test line 3 is train line 6", "held-out figures flatter it"]),
    ("copies within the test split", _folder(ROWS[:3], [ROWS[4], ROWS[4]]),
     ["split 'test' has 1 duplicate pair (line 2 repeats line 1)"]),
    ("no copies", _file_with([]), None),
    ("the same answers to other prompts", _file_with([dict(ROWS[0], prompt="Another question?")]), None),
]


@pytest.mark.parametrize("case, data, words", DUPLICATE_CASES, ids=[c[0] for c in DUPLICATE_CASES])
def test_data_check_warns_of_duplicates_and_keeps_every_row(tmp_path, capsys, case, data, words):
    path = data(tmp_path)
    before = files_of(tmp_path)
    status, out, err = run_case(["data", "check", path], capsys)
    assert status == 0 and "Traceback" not in err, err[-2000:]
    assert " 0 bad" in out and "OK:" in out, out  # nothing dropped, nothing refused
    if words is None:
        assert "warning:" not in out, out
    else:
        said = _one_line(out, "warning:")
        for word in words:
            assert word in said, (word, said)
    assert files_of(tmp_path) == before


TRAIN_DUPLICATE_CASES = [
    # (case, data (tmp) -> path, extra train arguments, words of the logged warning, the pairs line)
    ("held out by eval_split_size from a file of copies", lambda t: _write(t / "same.jsonl", jsonl_text([ROWS[0]] * 10)),
     ["--eval_split_size", "0.1"],
     ["split 'train' has 9 duplicate pairs", "1 of the 1 pairs held out by eval_split_size is also in training split "
      "'train' (held-out line", "held-out figures flatter it"], "9 training pairs, 1 eval pairs"),
    ("a test split that repeats training pairs", _folder(ROWS, ROWS[:2]), ["--dataset_test_split", "test"],
     ["2 of the 2 pairs of split 'test' are also in training split 'train'", "test line 2 is train line 2"],
     "6 training pairs, 2 eval pairs (split 'test')"),
]


@pytest.mark.parametrize("case, data, extra, words, pairs", TRAIN_DUPLICATE_CASES,
                         ids=[c[0] for c in TRAIN_DUPLICATE_CASES])
def test_train_logs_the_duplicate_warning_once_before_the_model(tmp_path, capsys, train_stops_before_the_model,
                                                                 case, data, extra, words, pairs):
    path = data(tmp_path)
    before = files_of(path.parent)
    status, out, err = run_case(train_stops_before_the_model("--dataset_name", path, *extra), capsys)
    check_refusal(status, err, [STOPPED])
    said = _one_line(out, "orpo-dist: data: warning:")
    for word in words:
        assert word in said, (word, said)
    assert pairs in out, out  # every row kept: the copies train and are held out as they are
    assert files_of(path.parent) == before


def test_finding_duplicates_costs_one_hash_per_row():
    from orpo_dist.data.duplicates import across, fingerprint, within
    from orpo_dist.data.prepare import Row

    def rows(n, offset=0):  # line i + 1 asks question i % 150,000: lines from 150,001 on repeat
        texts = ((f"Q{i % 150_000}?", "yes", "no", i) for i in range(offset, offset + n))
        return [Row(p, c, r, None, f"line {i + 1}", fingerprint(p, c, r)) for p, c, r, i in texts]

    started = time.perf_counter()
    training, held_out = rows(200_000), rows(10_000, offset=140_000)
    repeats, overlap = within(training), across(held_out, training)
    assert time.perf_counter() - started < 30  # a row against every other would take hours
    assert repeats.count == 50_000 and repeats.examples[0] == ("line 150001", "line 1")
    assert overlap.count == 10_000


# ---------------------------------------------------------------- 3. a pipe, a device, for a data path

@contextmanager
def fifo(path):
    """A named pipe at `path` that cannot hang the test: should anything open it to read, a writer
    thread answers with an empty stream; should nothing, the thread is let go at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: open(path, "wb").close(), daemon=True)
    writer.start()
    try:
        yield path
    finally:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # lets a writer still waiting open and go
        writer.join(timeout=10)


PIPE_WORDS = ["is a pipe", "<(zcat data.jsonl.gz)", "reads the data more than once and from every training process",
              "Save the data to a file first", "pass the .gz file itself: orpo-dist reads gzip directly"]

PIPE_CASES = [
    # (case, path of the pipe (tmp), argv (tmp, train), words of the one error line)
    ("data check of a pipe", "fd/63", lambda t, train: ["data", "check", t / "fd" / "63"], PIPE_WORDS),
    ("train on a pipe", "fd/63", lambda t, train: train("--dataset_name", t / "fd" / "63"), PIPE_WORDS),
    ("a pipe named .jsonl.gz", "pairs.jsonl.gz", lambda t, train: ["data", "check", t / "pairs.jsonl.gz"], PIPE_WORDS),
    ("a folder whose test file is a pipe", "ds/test.jsonl",
     lambda t, train: train("--dataset_name", t / "ds", "--dataset_test_split", "test"), ["ds/test.jsonl is a pipe"]),
    ("a character device", None, lambda t, train: ["data", "check", "/dev/null"],
     ["/dev/null is a character device, not a file", "give the path of a data file"]),
]


@pytest.mark.parametrize("case, pipe, argv, words", PIPE_CASES, ids=[c[0] for c in PIPE_CASES])
def test_a_pipe_is_refused_in_one_line_unread(tmp_path, capsys, train_stops_before_the_model, case, pipe, argv, words):
    _write(tmp_path / "ds" / "train.jsonl", jsonl_text(ROWS))
    before = files_of(tmp_path)
    if pipe is None:
        status, _, err = run_case(argv(tmp_path, train_stops_before_the_model), capsys)
    else:
        with fifo(tmp_path / pipe):
            status, _, err = run_case(argv(tmp_path, train_stops_before_the_model), capsys)
    check_refusal(status, err, words)
    assert "not found" not in err and STOPPED not in err
    assert {p: b for p, b in files_of(tmp_path).items() if p in before} == before


def test_the_gz_the_pipe_message_suggests_is_read_directly(tmp_path, capsys):
    path = _write(tmp_path / "data.jsonl.gz", gzip.compress(jsonl_text(ROWS).encode()))
    status, out, err = run_case(["data", "check", path], capsys)
    assert status == 0 and "6 rows, 6 good, 0 bad" in out and "note:" not in out, out + err[-2000:]


# ---------------------------------------------------------------- 4. a test split under other column names

QA = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in ROWS]
MAPPED = [{"q": r["prompt"], "a": r["chosen"], "b": r["rejected"]} for r in ROWS]

COLUMN_CASES = [
    # (case, train rows, test rows, extra options, words of the one line)
    ("question/good/bad", ROWS, QA, [],
     ["split 'test' (test.jsonl) has columns question, good, bad", "it needs prompt, chosen, rejected",
      "as split 'train' is read in the standard", "rename question to prompt, good to chosen, bad to rejected"]),
    ("one column renamed", ROWS, [{"prompt": r["prompt"], "better": r["chosen"], "rejected": r["rejected"]}
                                  for r in ROWS], [],
     ["has columns prompt, better, rejected", "it needs prompt, chosen, rejected", "rename better to chosen"]),
    ("columns mapped by dataset_columns", MAPPED, ROWS, ["--dataset_columns", "prompt=q,chosen=a,rejected=b"],
     ["has columns prompt, chosen, rejected", "it needs q (for prompt), a (for chosen), b (for rejected)",
      "rename prompt to q, chosen to a, rejected to b"]),
]


def _column_folder(tmp, train, test):
    _write(tmp / "ds" / "train.jsonl", jsonl_text(train))
    _write(tmp / "ds" / "test.jsonl", jsonl_text(test))
    return tmp / "ds"


@pytest.mark.parametrize("case, train, test, extra, words", COLUMN_CASES, ids=[c[0] for c in COLUMN_CASES])
def test_data_check_names_the_columns_a_test_split_has_and_needs(tmp_path, capsys, case, train, test, extra, words):
    folder = _column_folder(tmp_path, train, test)
    before = files_of(tmp_path)
    status, out, err = run_case(["data", "check", folder, *extra], capsys)
    assert status == 1 and "Traceback" not in err, err[-2000:]
    said = _one_line(out, "CANNOT TRAIN:")
    for word in words:
        assert word in said, (word, said)
    assert "missing value" not in out  # not row by row
    assert files_of(tmp_path) == before


@pytest.mark.parametrize("case, train, test, extra, words", COLUMN_CASES, ids=[c[0] for c in COLUMN_CASES])
def test_train_names_the_columns_a_test_split_has_and_needs(tmp_path, capsys, train_stops_before_the_model,
                                                            case, train, test, extra, words):
    folder = _column_folder(tmp_path, train, test)
    before = files_of(tmp_path)
    argv = train_stops_before_the_model("--dataset_name", folder, "--dataset_test_split", "test", *extra)
    status, _, err = run_case(argv, capsys)
    check_refusal(status, err, words)
    assert {p: b for p, b in files_of(tmp_path).items() if p in before} == before


def test_a_test_split_with_some_rows_lacking_a_column_still_reports_them_row_by_row(tmp_path, capsys):
    folder = _column_folder(tmp_path, ROWS, [ROWS[0], {"prompt": "Q?", "chosen": "Yes."}])
    status, out, _ = run_case(["data", "check", folder], capsys)
    assert status == 0 and "test line 2: missing value (rejected is missing or null)" in out, out

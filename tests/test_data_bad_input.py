"""orpo_dist.data on bad input: every problem is a UserError that says what and how to fix, or a
bad row reported with its line/row number and reason and dropped (refused with dataset_strict)."""

from __future__ import annotations

import gzip
import json

import pytest

from orpo_dist.data import DataUnusable, prepare_datasets
from orpo_dist.errors import UserError
from orpo_dist.recipe import DataArguments

from .helpers import prepare, write_jsonl

GOOD = {"prompt": "Is water wet?", "chosen": "Yes.", "rejected": "Banana."}


def bad(data):
    return [(b.number, b.reason) for b in data.report.bad_rows]


def good_rows(n):
    return [dict(GOOD, prompt=f"Question {i}?") for i in range(n)]


# ---------------------------------------------------------------- columns


def test_missing_column_names_it_lists_columns_and_shows_the_mapping(tmp_path):
    # The tutorial case that used to end in `KeyError: 'chosen'` deep inside TRL.
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "good": "a", "bad": "b"}])
    with pytest.raises(DataUnusable) as err:
        prepare(path)
    message = str(err.value)
    assert isinstance(err.value, UserError)
    assert "no column 'chosen' or 'rejected'" in message
    assert "Columns present: prompt, good, bad" in message
    assert "--dataset_columns chosen=good,rejected=bad" in message
    assert "dataset_columns: {chosen: good, rejected: bad}" in message


def test_missing_columns_guess_a_stack_exchange_mapping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "response_j": "a", "response_k": "b", "qid": 1}])
    with pytest.raises(DataUnusable) as err:
        prepare(path)
    assert "--dataset_columns prompt=question,chosen=response_j,rejected=response_k" in str(err.value)


def test_missing_prompt_column_for_plain_strings(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(DataUnusable, match="no column 'prompt'") as err:
        prepare(path)
    assert "prompt=YOUR_COLUMN" in str(err.value) and "--dataset_format hh" in str(err.value)


def test_mapping_to_a_column_that_does_not_exist(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(DataUnusable, match=r"no column 'answer_a' \(mapped to chosen by dataset_columns\)"):
        prepare(path, dataset_columns="chosen=answer_a")


def test_forced_format_checks_its_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(DataUnusable, match="no column 'conversations'"):
        prepare(path, dataset_format="sharegpt")


@pytest.mark.parametrize(
    "columns, match",
    [("chosen=a,oops", "expected KEY=VALUE"), ("answer=a", "unknown field"), ('{"prompt": ', "not valid JSON")],
)
def test_bad_dataset_columns_option(tmp_path, columns, match):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(UserError, match=match):
        prepare(path, dataset_columns=columns)


# ---------------------------------------------------------------- bad rows


def test_bad_answers_are_dropped_with_row_numbers_and_one_summary_line(tmp_path):
    rows = good_rows(4) + [
        dict(GOOD, chosen=""),  # line 5
        dict(GOOD, rejected="   "),  # 6
        dict(GOOD, rejected="Yes."),  # 7: identical
        dict(GOOD, chosen=42),  # 8
        dict(GOOD, rejected=["a", "list"]),  # 9
        dict(GOOD, chosen=None),  # 10
        {"prompt": "no answers at all"},  # 11
        dict(GOOD, prompt=""),  # 12
        dict(GOOD, prompt=7),  # 13
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = prepare(path)
    assert len(data.train) == 4
    assert bad(data) == [
        (5, "empty answer"),
        (6, "empty answer"),
        (7, "identical answers"),
        (8, "non-string answer"),
        (9, "non-string answer"),
        (10, "missing value"),
        (11, "missing value"),
        (12, "empty prompt"),
        (13, "non-string prompt"),
    ]
    summary = [line for line in data.log if line.startswith("data: train: dropped")]
    assert summary == [
        f"data: train: dropped 9 of 13 rows (2 empty answer, 2 missing value, 2 non-string answer, "
        f"1 empty prompt, 1 identical answers, 1 non-string prompt); see `orpo-dist data check {path}`"
    ]
    assert str(data.report.bad_rows[3]) == "train line 8: non-string answer (chosen is a int, expected a string)"


def test_broken_json_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(GOOD) + "\n\n")  # line 1, blank line 2
        f.write('{"prompt": "cut off", "chosen": \n')  # line 3
        f.write(json.dumps(dict(GOOD, prompt="Other?")) + "\n")  # line 4
        f.write("[1, 2]\n")  # line 5: not an object
        f.write("not json at all\n")  # line 6
    data = prepare(path)
    assert len(data.train) == 2
    assert bad(data) == [(3, "broken JSON"), (5, "broken JSON"), (6, "broken JSON")]
    assert "line 3" in str(data.report.bad_rows[0])


def test_broken_json_array_is_a_clear_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "a", "chosen": "b", "rejected": "c"},\n {"prompt": ]')
    with pytest.raises(UserError, match=r"not valid JSON .*line 2.*one object per line"):
        prepare(path)


def test_prompt_that_fills_max_length_is_dropped(tmp_path, demo_tokenizer):
    long_prompt = "word " * 49 + "word?"  # no trailing space: it would merge into the answer's first token
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, dict(GOOD, prompt=long_prompt)])
    rendered = demo_tokenizer.apply_chat_template(
        [{"role": "user", "content": long_prompt}], tokenize=False, add_generation_prompt=True
    )
    n = len(demo_tokenizer(rendered, add_special_tokens=False)["input_ids"])  # starts with BOS already
    at_limit = prepare(path, demo_tokenizer, max_length=n)
    assert bad(at_limit) == [(2, "prompt too long")] and len(at_limit.train) == 1
    assert f"the prompt is {n} tokens, max_length is {n}" in at_limit.report.bad_rows[0].detail
    assert bad(prepare(path, demo_tokenizer, max_length=n + 1)) == []
    # without a template the trainer adds a BOS token: it counts too
    plain_n = len(demo_tokenizer(long_prompt, add_special_tokens=False)["input_ids"]) + 1
    assert bad(prepare(path, demo_tokenizer, max_length=plain_n, apply_chat_template=False)) == [(2, "prompt too long")]
    assert bad(prepare(path, demo_tokenizer, max_length=plain_n + 1, apply_chat_template=False)) == []


HH_PREFIX = "\n\nHuman: Can you help me?\n\nAssistant: Sure.\n\nHuman: Tell me a fact."


@pytest.mark.parametrize(
    "chosen, rejected, reason, detail",
    [
        (HH_PREFIX + "\n\nAssistant:  ", HH_PREFIX + "\n\nAssistant: Cats purr.", "empty answer", "chosen reply is empty"),
        (
            HH_PREFIX + "\n\nAssistant: Cats purr.",
            HH_PREFIX.replace("a fact", "a joke") + "\n\nAssistant: No.",
            "malformed transcript",
            "chosen and rejected differ before the final reply (from turn 3",
        ),
        ("\n\nHuman: Tell me a fact. Cats purr.", HH_PREFIX + "\n\nAssistant: No.", "malformed transcript",
         "no '\\n\\nAssistant:' in chosen"),
        (
            HH_PREFIX + "\n\nAssistant: Cats purr.\n\nHuman: thanks",
            HH_PREFIX + "\n\nAssistant: No.",
            "malformed transcript",
            "chosen ends with a Human turn: an extra '\\n\\nHuman:' turn inside the reply",
        ),
        (
            HH_PREFIX + "\n\nAssistant: Cats purr.",
            HH_PREFIX + "\n\nAssistant: No.\n\nAssistant: Well, fine: dogs bark.",
            "malformed transcript",
            "the rejected reply holds an extra '\\n\\nAssistant:' turn",
        ),
        ("Some preamble" + HH_PREFIX + "\n\nAssistant: A.", HH_PREFIX + "\n\nAssistant: B.", "malformed transcript",
         "chosen does not start with"),
        (HH_PREFIX + "\n\nAssistant: Same.", HH_PREFIX + "\n\nAssistant: Same.", "identical answers", ""),
        ({"text": HH_PREFIX}, HH_PREFIX + "\n\nAssistant: B.", "non-string answer", "chosen is a dict"),
    ],
)
def test_malformed_hh_transcripts(tmp_path, chosen, rejected, reason, detail):
    good = {"chosen": HH_PREFIX + "\n\nAssistant: Cats purr.", "rejected": HH_PREFIX + "\n\nAssistant: No."}
    path = write_jsonl(tmp_path / "hh.jsonl", [good, good, {"chosen": chosen, "rejected": rejected}])
    data = prepare(path)
    assert data.report.format == "hh"
    assert bad(data) == [(3, reason)]
    assert detail in data.report.bad_rows[0].detail
    assert len(data.train) == 2


@pytest.mark.parametrize(
    "row, detail",
    [
        ({"prompt": [{"role": "robot", "content": "hi"}], "chosen": "a", "rejected": "b"}, "has role 'robot'"),
        ({"prompt": [{"role": "user", "content": 5}], "chosen": "a", "rejected": "b"}, "content is a int"),
        ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}, "is not a {role, content} message"),
        (
            {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "chosen": "a",
             "rejected": "b"},
            "the prompt ends with a 'assistant' message",
        ),
        (
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "rejected": [{"role": "user", "content": "other q"}, {"role": "assistant", "content": "b"}]},
            "differ before their final message",
        ),
        ({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "expected 'assistant'"),
    ],
)
def test_bad_conversational_rows(tmp_path, row, detail):
    good = {"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}
    data = prepare(write_jsonl(tmp_path / "c.jsonl", [good, good, row]))
    assert data.report.format == "conversational"
    assert [b.number for b in data.report.bad_rows] == [3]
    assert detail in data.report.bad_rows[0].detail


def test_bad_sharegpt_rows(tmp_path):
    conv = [{"from": "human", "value": "hi"}]
    rows = [
        {"conversations": conv, "chosen": {"from": "gpt", "value": "a"}, "rejected": "b"},
        {"conversations": [{"from": "alien", "value": "hi"}], "chosen": "a", "rejected": "b"},
        {"conversations": conv, "chosen": {"from": "human", "value": "a"}, "rejected": "b"},
        {"conversations": "hi", "chosen": "a", "rejected": "b"},
        {"conversations": conv, "chosen": 3, "rejected": "b"},
    ]
    data = prepare(write_jsonl(tmp_path / "s.jsonl", rows))
    assert [(b.number, b.detail) for b in data.report.bad_rows] == [
        (2, "conversations[0] is from 'alien'; expected human, gpt or system"),
        (3, "chosen is a 'user' message, expected gpt"),
        (4, "conversations is a str, expected a list"),
        (5, "chosen is a int, expected one {from, value} message or a string"),
    ]


# ---------------------------------------------------------------- strict, empty, unreadable


def test_strict_refuses_and_lists_the_first_twenty(tmp_path):
    rows = good_rows(3) + [dict(GOOD, chosen="")] * 25
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataUnusable) as err:
        prepare(path, dataset_strict=True)
    message = str(err.value)
    assert "25 bad rows and dataset_strict is set" in message
    assert "train line 4: empty answer" in message and "train line 23: empty answer" in message
    assert "train line 24:" not in message and "... and 5 more bad rows" in message
    assert len(prepare(path).train) == 3  # not strict: dropped


def test_file_of_only_broken_lines_reports_them(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ["{oops", "[1]"])
    with pytest.raises(DataUnusable, match=r"all 2 are bad \(2 broken JSON\)(?s:.*)line 1"):
        prepare(path)


def test_dropped_line_repeats_the_options_for_data_check(tmp_path):
    rows = [{"q": "Q?", "good": "A", "bad": "B"}, {"q": "Q?", "good": "", "bad": "B"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = prepare(path, max_length=512, dataset_columns="prompt=q,chosen=good,rejected=bad")
    assert data.log[1] == (
        f"data: train: dropped 1 of 2 rows (1 empty answer); see `orpo-dist data check {path} "
        "--dataset_columns prompt=q,chosen=good,rejected=bad --max-length 512`"
    )


def test_no_good_rows_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [dict(GOOD, chosen="")] * 3 + ["{oops"])
    with pytest.raises(DataUnusable, match=r"no usable rows: all 4 are bad \(3 empty answer, 1 broken JSON\)"):
        prepare(path)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n")
    with pytest.raises(DataUnusable, match="is empty: there is nothing to train on"):
        prepare(path)


def test_bad_test_split_rows_are_dropped_too(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", good_rows(3))
    write_jsonl(folder / "test.jsonl", good_rows(2) + [dict(GOOD, rejected=None)])
    data = prepare(folder)
    assert len(data.eval) == 2 and [(b.split, b.number) for b in data.report.bad_rows] == [("test", 3)]
    assert any(line.startswith("data: test: dropped 1 of 3 rows") for line in data.log)


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing.jsonl", "not found: no such file or folder"),
        ("./nowhere/data", "not found"),
        ("some-org/some-dataset", "Hub cannot be reached|could not load dataset"),
    ],
)
def test_unreadable_dataset_names(tmp_path, monkeypatch, name, match):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=match):
        prepare(name)


def test_no_dataset_and_unknown_split(tmp_path):
    with pytest.raises(UserError, match="no dataset given"):
        prepare_datasets(DataArguments(), None, 1024, 0, lambda m: None)
    folder = tmp_path / "f"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", good_rows(2))
    write_jsonl(folder / "test.jsonl", good_rows(2))
    with pytest.raises(UserError, match=r"(?s)no split 'train_prefs'; its splits: test, train.*--dataset_train_split"):
        prepare(folder, dataset_train_split="train_prefs")


def test_unreadable_files(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="is not a Parquet file"):
        prepare(tmp_path / "x.parquet")
    (tmp_path / "x.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:20])
    with pytest.raises(UserError, match="is the file complete"):
        prepare(tmp_path / "x.jsonl.gz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="unsupported file type"):
        prepare(tmp_path / "x.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no data files found"):
        prepare(empty)

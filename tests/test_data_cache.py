"""Prepared data is cached (data/cache.py): a second run of the same data, tokenizer and recipe
loads it memory-mapped, identical to what the trainer's own tokenization gives; anything that
changes it prepares again; a folder no preparation finished is never used. (One preparation per
node under DDP: tests/test_distributed.py, from each rank's probe.)"""

from __future__ import annotations

import os

import pytest

import orpo_dist.data.cache as cache
from orpo_dist.data.tokenize import TOKEN_COLUMNS

from .helpers import TINY_RECIPE, write_jsonl

ROWS = [{"prompt": f"Question {i}: what is {i} + {i}?", "chosen": f" {2 * i}.", "rejected": f" {2 * i + 1}, maybe."}
        for i in range(40)]


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Each preparation run, counted; the cache in tmp_path."""
    made = []
    real = cache.prepare_datasets

    def counting(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "prepare_datasets", counting)
    monkeypatch.setattr(cache, "cache_root", lambda: tmp_path / "cache")
    return made


def recipe(data, tmp_path, *fields):
    from orpo_dist.recipe import parse

    return parse(["--config", str(TINY_RECIPE), "--dataset_name", str(data), "--dataset_test_split", "",
                  "--eval_split_size", "0.1", "--output_dir", str(tmp_path / "run"), *fields])


def load(r, tokenizer, lines=None):
    return cache.load_or_prepare(r.data, tokenizer, r.training, (lines if lines is not None else []).append)


def test_a_second_run_loads_what_the_first_prepared(calls, tmp_path, demo_tokenizer):
    from orpo_dist.orpo.datasets import tokenize_dataset

    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    r = recipe(data, tmp_path)
    first_lines, second_lines = [], []
    first = load(r, demo_tokenizer, first_lines)
    second = load(r, demo_tokenizer, second_lines)
    assert calls == [1]
    assert "cached in" in first_lines[-1] and "prepared earlier" in second_lines[-1]
    assert first_lines[:-1] == second_lines[:-1]  # the data's own lines, said again
    assert len(second.train) == 36 and len(second.eval) == 4
    # Memory-mapped from the cache folder, not rows held in Python.
    assert second.train.cache_files and second.train.cache_files[0]["filename"].startswith(str(second.folder))
    # The same token rows as the trainer's own tokenization of the prepared strings.
    strings = cache.prepare_datasets(r.data, demo_tokenizer, r.training.max_length, r.training.seed, log=print)
    for part, text in ((second.train, strings.train), (second.eval, strings.eval)):
        expected = tokenize_dataset(text, demo_tokenizer, r.training, "training")
        for key in TOKEN_COLUMNS:
            assert part[key] == expected[key], key
    assert second.heldout_file.read_text().count("\n") == 4


CHANGES = {  # what changes -> the recipe's fields after the change (None: the data file's content)
    "the data's content": None,
    "max_length": ["--max_length", "64"],
    "the seed": ["--seed", "7"],
    "the held-out share": ["--eval_split_size", "0.2"],
}


@pytest.mark.parametrize("change", CHANGES)
def test_what_changes_the_data_prepares_again(change, calls, tmp_path, demo_tokenizer):
    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    r = recipe(data, tmp_path)
    load(r, demo_tokenizer)
    os.utime(data, (1, 1))  # the file's time alone is not its content
    load(r, demo_tokenizer)
    assert calls == [1]
    if CHANGES[change] is None:
        write_jsonl(data, ROWS[:-1])
    else:
        r = recipe(data, tmp_path, *CHANGES[change])
    load(r, demo_tokenizer)
    assert calls == [1, 1]


def test_another_chat_template_prepares_again(calls, tmp_path, demo_tokenizer):
    import copy

    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    r = recipe(data, tmp_path)
    load(r, demo_tokenizer)
    other = copy.deepcopy(demo_tokenizer)
    other.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    load(r, other)
    assert calls == [1, 1]


def test_a_folder_no_preparation_finished_is_not_used(calls, tmp_path, demo_tokenizer):
    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    r = recipe(data, tmp_path)
    key = cache.cache_key(r.data, demo_tokenizer, r.training)
    torn = tmp_path / "cache" / key
    torn.mkdir(parents=True)
    (torn / cache.TRAIN).write_bytes(b"half an arrow file")
    loaded = load(r, demo_tokenizer)
    assert calls == [1] and len(loaded.train) == 36
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [key]  # no partial folder left


def test_a_cache_that_cannot_be_written_is_named_with_the_fix(monkeypatch, tmp_path, demo_tokenizer):
    from orpo_dist.errors import UserError

    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache's folder would be")
    monkeypatch.setattr(cache, "cache_root", lambda: blocked / "orpo-dist")
    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    with pytest.raises(UserError, match=r"cannot write the prepared data to .*file/orpo-dist: .*HF_DATASETS_CACHE"):
        load(recipe(data, tmp_path), demo_tokenizer)


def test_a_rank_that_waits_for_its_node_never_prepares(calls, tmp_path, demo_tokenizer):
    """After its node's main process failed, the others find no complete folder: they say so
    rather than each prepare the whole dataset again."""
    from orpo_dist.errors import UserError

    r = recipe(write_jsonl(tmp_path / "pairs.jsonl", ROWS), tmp_path)
    with pytest.raises(UserError, match="this node's main process did not finish preparing it"):
        cache.load_or_prepare(r.data, demo_tokenizer, r.training, print, prepares=False)
    assert calls == []

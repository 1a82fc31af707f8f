"""The one tokenization (orpo_dist/data/tokenize.py): TRL's own tokenize_row without
max_prompt_length; with it, a prompt too long for its row keeps its last tokens (and its BOS) and
the row trains instead of being dropped. The data layer's counts (`orpo-dist data check`) are the
trainer's."""

from __future__ import annotations

import pytest

from orpo_dist.data.errors import BadRowError
from orpo_dist.data.tokenize import tokenize_pair

from .helpers import prepare, write_jsonl

LONG_PROMPT = "Here is some background you should read first. " * 40 + "Now, is the sky blue?"
ROWS = [
    {"prompt": "Is the sky blue?", "chosen": "Yes, on a clear day.", "rejected": "No."},
    {"prompt": "Name a colour.", "chosen": "Green. " * 60, "rejected": "Blue."},  # only its answers are cut
    {"prompt": LONG_PROMPT, "chosen": "Yes, on a clear day.", "rejected": "No, it is green."},
    {"prompt": "Ends with a space ", "chosen": " leading space", "rejected": "no space"},
    {"prompt": "Unicode ✓ café " * 30, "chosen": "naïve 🙂", "rejected": "ok"},
]


@pytest.fixture(autouse=True, scope="module")
def accelerate_state():
    from accelerate import PartialState

    PartialState(cpu=True)  # TRL's tokenize_row warns about prompts that fill max_length through accelerate


class Ours:
    """tokenize_pair with a trainer's settings; a refused row tokenizes to None."""

    def __init__(self, tokenizer, max_length, max_prompt_length=None):
        self.tokenizer, self.max_length, self.max_prompt_length = tokenizer, max_length, max_prompt_length

    def tokenize_row(self, row):
        try:
            return tokenize_pair(self.tokenizer, row["prompt"], row["chosen"], row["rejected"], self.max_length,
                                 self.max_prompt_length)
        except BadRowError:
            return None


def bare(cls, tokenizer, max_length, max_prompt_length=None):
    """TRL's trainer able to tokenize rows without a model: tokenize_row needs only these attributes."""
    trainer = cls.__new__(cls)
    trainer.is_encoder_decoder, trainer.processing_class, trainer.max_length = False, tokenizer, max_length
    return trainer


def trl_row(tokenizer, row, max_length):
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer.tokenize_row(bare(ORPOTrainer, tokenizer, max_length), row)


def prompt_side(tokenized, side="chosen"):
    return tokenized[f"{side}_labels"].count(-100)


def prepare_rows(tmp_path, tokenizer, rows, max_length, max_prompt_length=None, template=True):
    return prepare(write_jsonl(tmp_path / "pairs.jsonl", rows), tokenizer, max_length,
                   max_prompt_length=max_prompt_length, apply_chat_template=template)


def test_without_max_prompt_length_every_row_is_trls_or_refused(demo_tokenizer):
    """TRL's tokens for every row TRL leaves an answer to learn; the row TRL would train on an empty
    answer (its prompt fills max_length: a NaN loss) is refused."""
    ours = Ours(demo_tokenizer, 128)
    refused = 0
    for row in ROWS:
        trl = trl_row(demo_tokenizer, row, 128)
        if all(label == -100 for label in trl["chosen_labels"]):
            assert ours.tokenize_row(row) is None
            refused += 1
        else:
            assert ours.tokenize_row(row) == trl
    assert refused == 2  # the long prompt and the long unicode one


def test_rows_whose_prompt_is_not_cut_are_trls(demo_tokenizer):
    ours = Ours(demo_tokenizer, 128, max_prompt_length=64)
    for row in ROWS[:2] + ROWS[3:4]:  # they fit, or only their answers are too long
        assert ours.tokenize_row(row) == trl_row(demo_tokenizer, row, 128)


@pytest.mark.parametrize("template", [False, True], ids=["plain", "chat-template"])
def test_a_long_prompt_keeps_its_last_tokens_and_trains(tmp_path, demo_tokenizer, template):
    max_length, limit = 128, 48
    bos = demo_tokenizer.bos_token_id
    kept = prepare_rows(tmp_path, demo_tokenizer, [ROWS[2]], max_length, limit, template)
    row = kept.train[0]  # the rendered strings the trainer gets
    assert kept.report.splits["train"].prompts_cut == 1 and not kept.report.bad_rows

    full = Ours(demo_tokenizer, 10**6).tokenize_row(row)  # nothing cut: TRL's tokens
    cut = Ours(demo_tokenizer, max_length, limit).tokenize_row(row)
    for side in ("chosen", "rejected"):
        prompt, answer = full[f"{side}_input_ids"][:prompt_side(full, side)], \
            full[f"{side}_input_ids"][prompt_side(full, side):]
        assert prompt[0] == bos and len(prompt) > max_length  # TRL starts every prompt with BOS
        ids, labels = cut[f"{side}_input_ids"], cut[f"{side}_labels"]
        assert ids[:limit] == [bos] + prompt[-(limit - 1):]  # BOS, then the prompt's last tokens
        assert labels[:limit] == [-100] * limit and ids[limit:] == answer == labels[limit:]  # whole answer learned
        assert len(ids) <= max_length and cut[f"{side}_attention_mask"] == [1] * len(ids)
    assert cut["prompt_input_ids"] == cut["chosen_input_ids"][:limit]

    # TRL alone leaves this row nothing to learn, so without max_prompt_length the data layer drops it.
    assert all(label == -100 for label in trl_row(demo_tokenizer, row, max_length)["chosen_labels"])
    dropped = prepare_rows(tmp_path, demo_tokenizer, [ROWS[2], ROWS[0]], max_length, None, template)
    assert [b.reason for b in dropped.report.bad_rows] == ["prompt too long"]


@pytest.mark.parametrize("template", [False, True], ids=["plain", "chat-template"])
def test_data_check_counts_what_the_trainer_cuts(tmp_path, demo_tokenizer, template):
    max_length, limit = 96, 32
    data = prepare_rows(tmp_path, demo_tokenizer, ROWS, max_length, limit, template)
    split = data.report.splits["train"]
    assert split.good == len(ROWS) and not data.report.bad_rows
    trainer, untouched = Ours(demo_tokenizer, max_length, limit), \
        Ours(demo_tokenizer, 10**6)
    cut_rows = 0
    for row, prompt_len, chosen_len in zip(data.train, split.prompt_tokens, split.chosen_tokens):
        out = trainer.tokenize_row(row)
        assert max(prompt_side(out, "chosen"), prompt_side(out, "rejected")) == prompt_len
        assert len(out["chosen_input_ids"]) == min(max_length, prompt_side(out) + chosen_len)
        assert any(label != -100 for label in out["chosen_labels"])  # something to learn on both sides
        assert any(label != -100 for label in out["rejected_labels"])
        cut_rows += len(out["prompt_input_ids"]) < len(untouched.tokenize_row(row)["prompt_input_ids"])
    # the long prompt and the long unicode one; with the template's system turn, the long-answer row too
    assert cut_rows == split.prompts_cut == (3 if template else 2)

"""Pairs -> the prompt/chosen/rejected strings ORPOTrainer wants, and the token checks that keep
its `tokenize_row` from failing (or training on nothing) because of one row.

With a chat template the prompt is rendered with add_generation_prompt=True and each answer is the
rendered assistant turn, end-of-turn token included (TRL's own `apply_chat_template`). Without one,
string prompts pass through verbatim and message lists become "Role: content" text.
"""

from __future__ import annotations

from typing import NamedTuple

from .formats import Pair
from .report import PROMPT_TOO_LONG, TEMPLATE_FAILED, TOKENIZATION, BadRowError
from .truncation import prompt_is_cut

_BATCH = 512


class Renderer:
    def __init__(self, tokenizer, apply_chat_template: bool = True):
        self.tokenizer = tokenizer
        self.use_template = bool(
            apply_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None)
        )
        self.name = "chat template" if self.use_template else "plain text"

    def __call__(self, pair: Pair) -> tuple[str, str, str]:
        if self.use_template:
            return self._template(pair)
        if isinstance(pair.prompt, str):
            return pair.prompt, pair.chosen, pair.rejected
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in pair.prompt]
        return "\n\n".join(lines) + "\n\nAssistant:", " " + pair.chosen, " " + pair.rejected

    def _template(self, pair: Pair) -> tuple[str, str, str]:
        from trl.data_utils import apply_chat_template

        prompt = pair.prompt
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        example = {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        try:
            out = apply_chat_template(example, self.tokenizer)
        except Exception as err:  # jinja raise_exception(), role checks of strict templates, ...
            raise BadRowError(TEMPLATE_FAILED, f"{type(err).__name__}: {str(err)[:200]}") from None
        return out["prompt"], out["chosen"], out["rejected"]


class RowLengths(NamedTuple):
    prompt: int  # tokens of the prompt as the trainer keeps it (BOS included; after a max_prompt_length cut)
    chosen: int  # tokens of each answer before any cut to max_length (EOS included)
    rejected: int
    prompt_cut: bool  # the prompt was longer and is cut to max_prompt_length (data/truncation.py)


def measure(tokenizer, rows: list[tuple[str, str, str]], max_length: int | None,
            max_prompt_length: int | None = None) -> list:
    """Per row: RowLengths exactly as orpo-dist's trainer tokenizes it (TRL's tokenize_row: BOS/EOS
    added when missing; then data/truncation.py's rule), or a BadRowError for a row it would reject
    or could only train on with an empty answer. Mirrors trl.experimental.orpo.ORPOTrainer
    .tokenize_row and build_tokenized_answer (TRL 1.16); tests/test_data_formats.py runs the real
    ones on our output."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        prompts = _ids(tokenizer, [p for p, _, _ in batch])
        fulls_c = _ids(tokenizer, [p + c for p, c, _ in batch])
        fulls_r = _ids(tokenizer, [p + r for p, _, r in batch])
        for prompt_ids, full_c, full_r in zip(prompts, fulls_c, fulls_r):
            out.append(_one(prompt_ids, full_c, full_r, bos, eos, max_length, max_prompt_length))
    return out


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _split(prompt_ids, full_ids):
    if len(full_ids) < len(prompt_ids):
        raise BadRowError(TOKENIZATION, "prompt+answer has fewer tokens than the prompt alone")
    start = len(prompt_ids)
    if prompt_ids != full_ids[:start]:
        start -= 1  # the last prompt token merged into the answer
    return full_ids[:start], full_ids[start:]


def _one(prompt_ids, full_c, full_r, bos, eos, max_length, max_prompt_length):
    try:
        prompt_c, answer_c = _split(prompt_ids, full_c)
        prompt_r, answer_r = _split(prompt_ids, full_r)
    except BadRowError as err:
        return err
    diff_tokens = sum(a != b for a, b in zip(prompt_c, prompt_r))
    if diff_tokens > 1 or abs(len(prompt_c) - len(prompt_r)) > 1:
        return BadRowError(TOKENIZATION, "chosen and rejected tokenize the shared prompt differently")

    def with_bos(ids):
        return len(ids) + (1 if bos is not None and (not ids or ids[0] != bos) else 0)

    def with_eos(ids):
        return len(ids) + (1 if not ids or ids[-1] != eos else 0)

    prompt_len = max(with_bos(prompt_c), with_bos(prompt_r))
    chosen_len, rejected_len = with_eos(answer_c), with_eos(answer_r)
    if prompt_is_cut(prompt_len, max(chosen_len, rejected_len), max_length, max_prompt_length):
        return RowLengths(max_prompt_length, chosen_len, rejected_len, True)
    if max_length is not None and prompt_len >= max_length:
        return BadRowError(
            PROMPT_TOO_LONG,
            f"the prompt is {prompt_len} tokens, max_length is {max_length}: no room left for the answer"
            + ("" if max_prompt_length else " (set max_prompt_length to keep its last tokens instead)"),
        )
    return RowLengths(prompt_len, chosen_len, rejected_len, False)

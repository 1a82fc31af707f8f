"""A preference pair's tokens: the one tokenization that training, `data check` and `eval` share.

TRL 1.16's ORPO rules, for decoder-only models, written out so that orpo-dist owns them:

- the prompt and each `prompt + answer` are tokenized without special tokens; a tokenizer may
  merge the prompt's last token with the answer's first (Llama's does), so each answer starts
  where its full sequence stops agreeing with the prompt alone, and the two sides' prompts may
  differ in that last token only (more is a row that cannot train: "tokenization mismatch");
- every prompt starts with BOS and every answer ends with EOS, each added only when missing;
- then the row is cut to fit (data/truncation.py): with `max_prompt_length` a prompt that does
  not fit keeps its last tokens; `max_completion_length` caps each answer; every answer is cut
  to what `max_length` leaves after its prompt, as TRL cuts it.

One rule TRL does not have: a row left with an empty answer (its prompt fills max_length) is
refused ("prompt too long") instead of tokenized. TRL trains on it, and the loss of that pair is
NaN (0/0 in the answer's mean log-prob): every weight NaN after one stock step.

The row's keys are TRL's (`prompt_*`, `chosen_*`, `rejected_*` input_ids / attention_mask,
`*_labels` with -100 on the prompt), so TRL's trainer, the tests' reference, takes the same rows.
Pure Python apart from the tokenizer call; tokenizers are called 512 rows at a time.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import UserError
from .errors import PROMPT_TOO_LONG, TOKENIZATION, BadRowError
from .truncation import LABEL_PAD, truncate_row

TOKEN_COLUMNS = ("prompt_input_ids", "prompt_attention_mask", "chosen_input_ids", "chosen_attention_mask",
                 "chosen_labels", "rejected_input_ids", "rejected_attention_mask", "rejected_labels")
SIDES = ("chosen", "rejected")
_BATCH = 512
_SHOWN = 5  # refused rows named in the message


class RowLengths(NamedTuple):
    prompt: int  # tokens of the prompt as the trainer keeps it (BOS included; after a max_prompt_length cut)
    chosen: int  # tokens of each answer before the cut to max_length (EOS included; max_completion_length applied)
    rejected: int
    prompt_cut: bool  # the prompt was longer and is cut to max_prompt_length (data/truncation.py)


class TokenizedPair(NamedTuple):
    row: dict  # TRL's keys: what the trainer trains on and eval scores
    lengths: RowLengths  # what `data check` reports


def tokenize_pairs(tokenizer, rows: list[tuple[str, str, str]], max_length: int | None,
                   max_prompt_length: int | None = None,
                   max_completion_length: int | None = None) -> list[TokenizedPair | BadRowError]:
    """Per (prompt, chosen, rejected) row of rendered strings: its TokenizedPair, or the
    BadRowError that says why it cannot train."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for start in range(0, len(rows), _BATCH):
        batch = rows[start:start + _BATCH]
        prompts = _ids(tokenizer, [p for p, _, _ in batch])
        fulls = {side: _ids(tokenizer, [row[0] + row[1 + k] for row in batch]) for k, side in enumerate(SIDES)}
        for i, prompt_ids in enumerate(prompts):
            try:
                untruncated = _untruncated_row(prompt_ids, fulls["chosen"][i], fulls["rejected"][i], bos, eos)
                out.append(fit(untruncated, max_length, max_prompt_length, max_completion_length, bos))
            except BadRowError as err:
                out.append(err)
    return out


def tokenize_pair(tokenizer, prompt: str, chosen: str, rejected: str, max_length: int | None,
                  max_prompt_length: int | None = None, max_completion_length: int | None = None) -> dict:
    """One row's tokens (TRL's keys); raises BadRowError for a row that cannot train."""
    result = tokenize_pairs(tokenizer, [(prompt, chosen, rejected)], max_length, max_prompt_length,
                            max_completion_length)[0]
    if isinstance(result, BadRowError):
        raise result
    return result.row


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _split(prompt_ids: list[int], full_ids: list[int]) -> tuple[list[int], list[int]]:
    """(the prompt as it stands in `full_ids`, the answer): a prompt token that merged with the
    answer's first one belongs to the answer."""
    if len(full_ids) < len(prompt_ids):
        raise BadRowError(TOKENIZATION, "prompt+answer has fewer tokens than the prompt alone")
    start = len(prompt_ids)
    if prompt_ids != full_ids[:start]:
        start -= 1
    return full_ids[:start], full_ids[start:]


def _untruncated_row(prompt_ids, full_chosen, full_rejected, bos, eos) -> dict:
    """TRL's tokenize_row with nothing cut."""
    prompts, answers = {}, {}
    for side, full in zip(SIDES, (full_chosen, full_rejected)):
        prompts[side], answers[side] = _split(prompt_ids, full)
    c, r = prompts["chosen"], prompts["rejected"]
    if sum(a != b for a, b in zip(c, r)) > 1 or abs(len(c) - len(r)) > 1:
        raise BadRowError(TOKENIZATION, "chosen and rejected tokenize the shared prompt differently")
    prompt = prompt_ids[:min(len(c), len(r))]

    def with_bos(ids):
        return [bos, *ids] if bos is not None and (not ids or ids[0] != bos) else list(ids)

    def with_eos(ids):
        return [*ids, eos] if not ids or ids[-1] != eos else list(ids)

    row = {"prompt_input_ids": with_bos(prompt)}
    row["prompt_attention_mask"] = [1] * len(row["prompt_input_ids"])
    for side in SIDES:
        side_prompt, answer = with_bos(prompts[side]), with_eos(answers[side])
        row[f"{side}_input_ids"] = side_prompt + answer
        row[f"{side}_attention_mask"] = [1] * len(row[f"{side}_input_ids"])
        row[f"{side}_labels"] = [LABEL_PAD] * len(side_prompt) + answer
    return row


def fit(row: dict, max_length: int | None, max_prompt_length: int | None, max_completion_length: int | None,
        bos: int | None) -> TokenizedPair:
    """An untruncated row cut to fit (data/truncation.py), with its lengths; a row left without an
    answer token on either side is refused."""
    prompt_len = {side: row[f"{side}_labels"].count(LABEL_PAD) for side in SIDES}
    answer_len = {side: len(row[f"{side}_input_ids"]) - prompt_len[side] for side in SIDES}
    if max_completion_length is not None:
        answer_len = {side: min(n, max_completion_length) for side, n in answer_len.items()}
    cut = truncate_row(row, max_length, max_prompt_length, bos, max_completion_length)
    kept_prompt = max(cut[f"{side}_labels"].count(LABEL_PAD) for side in SIDES)
    prompt_cut = len(cut["prompt_input_ids"]) < len(row["prompt_input_ids"])
    if any(cut[f"{side}_labels"].count(LABEL_PAD) == len(cut[f"{side}_labels"]) for side in SIDES):
        raise BadRowError(
            PROMPT_TOO_LONG,
            f"the prompt is {kept_prompt} tokens, max_length is {max_length}: no room left for the answer"
            + ("" if max_prompt_length else " (set max_prompt_length to keep its last tokens instead)"),
        )
    return TokenizedPair(cut, RowLengths(kept_prompt, answer_len["chosen"], answer_len["rejected"], prompt_cut))


def measure(tokenizer, rows: list[tuple[str, str, str]], max_length: int | None,
            max_prompt_length: int | None = None, max_completion_length: int | None = None) -> list:
    """Per row: its RowLengths as training tokenizes it, or the BadRowError of a row it refuses."""
    return [r if isinstance(r, BadRowError) else r.lengths
            for r in tokenize_pairs(tokenizer, rows, max_length, max_prompt_length, max_completion_length)]


def answer_tokens(row: dict) -> tuple[int, int]:
    """(chosen, rejected) answer tokens a tokenized row trains on."""
    return tuple(sum(label != LABEL_PAD for label in row[f"{side}_labels"]) for side in SIDES)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    k = 0
    for x, y in zip(a, b):
        if x != y:
            break
        k += 1
    return k


def pair_tokens(chosen: list[int], rejected: list[int]) -> int:
    """Tokens a pair holds once its shared prefix is counted once (the fast step's cost of a pair)."""
    return len(chosen) + len(rejected) - common_prefix(chosen, rejected)


def refuse_rows(refused: list[tuple[int, str]], total: int, name: str) -> None:
    """Stop on (row index, reason) rows that cannot train, naming the first few: the data layer
    drops and reports such rows, so here they mean a dataset that skipped it."""
    if not refused:
        return
    listed = "; ".join(f"row {i}: {reason}" for i, reason in refused[:_SHOWN])
    more = f" (and {len(refused) - _SHOWN} more)" if len(refused) > _SHOWN else ""
    raise UserError(
        f"{len(refused)} of the {total} {name} pairs cannot train: {listed}{more}. Set max_prompt_length (long "
        "prompts keep their last tokens), raise max_length, or drop those rows (`orpo-dist data check` lists every one)")

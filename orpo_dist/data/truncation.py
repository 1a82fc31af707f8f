"""How a tokenized row is cut to fit max_length: the one home of the rule.

TRL 1.16's ORPOTrainer cuts only the answers, to max_length minus the prompt; a prompt that fills
max_length by itself leaves nothing to learn, and such rows are refused (data/tokenize.py). With
`max_prompt_length` (TRL 0.x's field) a row whose prompt + longer answer exceed max_length first
has its prompt cut to its last max_prompt_length tokens, the turns nearest the answer, as TRL
0.x's truncation_mode="keep_end" did; then the answers are cut as TRL 1.16 does. The row trains.
`max_completion_length` caps each answer before that (TRL uses it for encoder-decoder models only).

One difference from TRL 0.x, on purpose: 0.x cut after adding BOS and so dropped it; here a prompt
that starts with BOS keeps it (BOS + the last max_prompt_length - 1 tokens), so every prompt
starts the way TRL 1.16 starts it.

orpo_dist.data.tokenize tokenizes with these functions, for training, `data check` and `eval`
alike. Pure Python.
"""

from __future__ import annotations

LABEL_PAD = -100  # TRL's label for prompt (and padding) positions: not learned


def prompt_is_cut(prompt_len: int, longer_answer_len: int, max_length: int | None,
                  max_prompt_length: int | None) -> bool:
    """Does this row's prompt (tokens incl. BOS) get cut? Only with max_prompt_length, only when
    the row does not fit, and only when the prompt is longer than max_prompt_length."""
    if max_prompt_length is None or max_length is None:
        return False
    return prompt_len + longer_answer_len > max_length and prompt_len > max_prompt_length


def keep_prompt_end(ids: list[int], max_prompt_length: int, bos_token_id: int | None) -> list[int]:
    """The positions of `ids` a cut prompt keeps: its last tokens, and its leading BOS if it has one."""
    n = len(ids)
    if n <= max_prompt_length:
        return list(range(n))
    if bos_token_id is not None and ids[0] == bos_token_id:
        return [0, *range(n - (max_prompt_length - 1), n)] if max_prompt_length > 1 else [0]
    return list(range(n - max_prompt_length, n))


def answer_room(prompt_len: int, max_length: int | None, max_completion_length: int | None = None) -> int | None:
    """How many answer tokens fit after a prompt (TRL 1.16's answer truncation), None for all."""
    rooms = [n for n in (None if max_length is None else max(0, max_length - prompt_len), max_completion_length)
             if n is not None]
    return min(rooms) if rooms else None


def truncate_row(row: dict, max_length: int | None, max_prompt_length: int | None, bos_token_id: int | None,
                 max_completion_length: int | None = None) -> dict:
    """A row tokenized without any truncation (data/tokenize.py), cut by the rule above. Keys as
    TRL's: prompt_*, chosen_* and rejected_* input_ids / attention_mask, *_labels."""
    sides = {}
    for side in ("chosen", "rejected"):
        labels = row[f"{side}_labels"]
        start = next((i for i, label in enumerate(labels) if label != LABEL_PAD), len(labels))
        sides[side] = start  # the prompt's length within this sequence: its LABEL_PAD labels
    prompt_len = max(*sides.values(), len(row["prompt_input_ids"]))
    longer = max(len(row[f"{side}_input_ids"]) - start for side, start in sides.items())
    if max_completion_length is not None:
        longer = min(longer, max_completion_length)
    cut = prompt_is_cut(prompt_len, longer, max_length, max_prompt_length)
    out = dict(row)
    if cut:
        keep = keep_prompt_end(row["prompt_input_ids"], max_prompt_length, bos_token_id)
        for key in ("prompt_input_ids", "prompt_attention_mask"):
            out[key] = [row[key][i] for i in keep]
    for side, start in sides.items():
        ids, mask = row[f"{side}_input_ids"], row[f"{side}_attention_mask"]
        keep = keep_prompt_end(ids[:start], max_prompt_length, bos_token_id) if cut else list(range(start))
        answer = ids[start:][: answer_room(len(keep), max_length, max_completion_length)]
        out[f"{side}_input_ids"] = [ids[i] for i in keep] + answer
        out[f"{side}_attention_mask"] = [mask[i] for i in keep] + mask[start:start + len(answer)]
        out[f"{side}_labels"] = [LABEL_PAD] * len(keep) + answer
    return out

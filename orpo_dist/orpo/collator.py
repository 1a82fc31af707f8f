"""Tokenized pairs (data/tokenize.py) -> padded tensors under TRL's batch keys.

Answers and whole sequences are padded on the right, the prompt alone on the left, as TRL's
collator pads them; `padding_side="left"` pads every sequence on the left instead (both forwards
give the same result either way: the tests use it to prove it). Only the token columns travel;
a pair without an answer token on either side is refused here, so it can never reach the loss
(its mean log-prob would be 0/0, a NaN that poisons every weight).
"""

from __future__ import annotations

import torch

from ..data.tokenize import TOKEN_COLUMNS, answer_tokens
from ..data.truncation import LABEL_PAD

PROMPT_KEYS = ("prompt_input_ids", "prompt_attention_mask")


class PairCollator:
    def __init__(self, pad_token_id: int | None, padding_side: str = "right"):
        if pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to its eos_token) "
                             "before building the trainer")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        for i, feature in enumerate(features):
            if 0 in answer_tokens(feature):
                raise ValueError(f"pair {i} of this batch has an empty answer (its prompt fills max_length): "
                                 "such a pair has no mean log-prob to train on. Tokenize with "
                                 "orpo_dist.data.tokenize, which refuses it, or set max_prompt_length")
        batch = {}
        for key in TOKEN_COLUMNS:
            if key not in features[0]:
                continue
            side = "left" if key in PROMPT_KEYS else self.padding_side
            value = 0 if key.endswith("_attention_mask") else LABEL_PAD if key.endswith("_labels") else self.pad_token_id
            batch[key] = _pad([f[key] for f in features], value, side)
        return batch


def _pad(rows: list[list[int]], value: int, side: str) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            if side == "right":
                out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
            else:
                out[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
    return out

"""Preference scoring: the mean per-token log-prob of the chosen and the rejected answer of each pair.

Rows are tokenized as training tokenizes them (data/tokenize.py: TRL's rules, then
max_prompt_length), so held-out figures speak of the same sequences, and the same log-probs, the
ORPO loss saw. The forward is the fast step's (orpo/fast/): one shared-prefix block per pair (the
prompt runs once), pairs of similar length grouped into micro-batches by a token budget, and the
vocabulary projected only at answer positions, in chunks. The reference it is tested against is
one padded forward per answer with full logits (tests/test_eval.py), which also scores the
architectures the fast step is not exact for (architectures.py).
"""

from __future__ import annotations

import torch

from ..architectures import logit_softcap
from ..data.errors import BadRowError
from ..model_rules import DEFAULT_CHUNK_SIZE
from ..data.tokenize import tokenize_pairs as tokenize_rows
from ..orpo.fast.head import target_logps
from ..orpo.fast.hidden import per_pair_mean, target_hidden
from ..data.tokenize import pair_tokens
from ..orpo.fast.packing import attention_cost, pack_pairs
from ..orpo.select import unsupported_reason

SIDES = ("chosen", "rejected")
TOKEN_BUDGET = 8192  # unique tokens per micro-batch: a few MB of activations per layer for 135M-8B models
MAX_PAIRS_PER_BATCH = 64


def tokenize_pairs(tokenizer, rows: list[dict], max_length: int, max_prompt_length: int | None = None):
    """(tokenized rows, indices of the rows training would refuse): a row whose prompt fills
    max_length, or whose prompt chosen and rejected tokenize differently, is not scored."""
    results = tokenize_rows(tokenizer, [(r["prompt"], r["chosen"], r["rejected"]) for r in rows], max_length,
                            max_prompt_length)
    skipped = [i for i, r in enumerate(results) if isinstance(r, BadRowError)]
    return [r.row for r in results if not isinstance(r, BadRowError)], skipped


def micro_batches(tokenized: list[dict], token_budget: int = TOKEN_BUDGET,
                  max_pairs: int = MAX_PAIRS_PER_BATCH) -> list[list[int]]:
    """Row indices per micro-batch: sorted by length, so each batch holds pairs of similar size and
    packs with little padding; a batch closes when its unique tokens would pass the budget."""
    cost = [pair_tokens(t["chosen_input_ids"], t["rejected_input_ids"]) for t in tokenized]
    batches, current, used = [], [], 0
    for i in sorted(range(len(tokenized)), key=lambda i: cost[i]):
        if current and (used + cost[i] > token_budget or len(current) == max_pairs):
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += cost[i]
    if current:
        batches.append(current)
    return batches


def collate(tokenized: list[dict], pad_token_id: int, device) -> dict:
    """TRL's padded `chosen_*` / `rejected_*` tensors for a few tokenized rows (right padding)."""
    batch = {}
    for side in SIDES:
        width = max(len(t[f"{side}_input_ids"]) for t in tokenized)
        for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("labels", -100)):
            rows = [t[f"{side}_{key}"] + [pad] * (width - len(t[f"{side}_{key}"])) for t in tokenized]
            batch[f"{side}_{key}"] = torch.tensor(rows, dtype=torch.long, device=device)
    return batch


def _causal_lm(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@torch.no_grad()
def pair_logps(model, tokenized: list[dict], pad_token_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
               token_budget: int = TOKEN_BUDGET, progress=None) -> tuple[list[float], list[float]]:
    """(chosen, rejected): each pair's mean per-token answer log-prob, in the order of `tokenized`.
    `progress(n)` is called after each micro-batch with the number of pairs it scored."""
    lm = _causal_lm(model)
    device = next(model.parameters()).device
    # Padded rows where the packed forward is not exact (architecture, attention); FlexAttention,
    # which takes a BlockMask, is for training on GPUs.
    if unsupported_reason(lm.config, device_type=device.type) or \
            getattr(lm.config, "_attn_implementation", None) == "flex_attention":
        return padded_pair_logps(model, tokenized, pad_token_id, progress=progress)
    chosen, rejected = [0.0] * len(tokenized), [0.0] * len(tokenized)
    for members in micro_batches(tokenized, token_budget):
        packed = pack_pairs(collate([tokenized[i] for i in members], pad_token_id, device), pad_token_id,
                            cost_per_pair=attention_cost(lm.config))
        hidden = target_hidden(model, lm, packed)
        logps, _ = target_logps(lm.get_output_embeddings(), hidden, packed.target_tokens, chunk_size,
                                softcap=logit_softcap(lm.config))
        n, pairs = packed.num_pairs, packed.target_pairs
        for side, out in (("chosen", chosen), ("rejected", rejected)):
            means = per_pair_mean(logps.float(), pairs, getattr(packed, f"in_{side}"), n).tolist()
            for i, value in zip(members, means):
                out[i] = value
        if progress:
            progress(len(members))
    return chosen, rejected


@torch.no_grad()
def padded_pair_logps(model, tokenized: list[dict], pad_token_id: int, batch_size: int = 4, progress=None):
    """The plain reference: each answer in its own padded row, full-vocabulary logits (slow: the
    tests' reference, and the scorer of architectures the packed forward is not exact for)."""
    device = next(model.parameters()).device
    out = {}
    for side in SIDES:
        scores = []
        for start in range(0, len(tokenized), batch_size):
            batch = collate(tokenized[start:start + batch_size], pad_token_id, device)
            ids, labels = batch[f"{side}_input_ids"], batch[f"{side}_labels"]
            logits = model(input_ids=ids, attention_mask=batch[f"{side}_attention_mask"], use_cache=False).logits
            logps = logits[:, :-1].float().log_softmax(-1)
            targets = labels[:, 1:]
            mask = targets != -100
            token_logps = logps.gather(2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scores.extend(((token_logps * mask).sum(-1) / mask.sum(-1)).tolist())
            if progress and side == SIDES[-1]:
                progress(len(ids))
        out[side] = scores
    return out["chosen"], out["rejected"]

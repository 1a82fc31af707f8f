"""Preference scoring: mean per-token log-prob of the chosen and the rejected answer of each pair.

Tokenised the way TRL's ORPOTrainer tokenises training rows (prompt, then the answer as the suffix
of prompt+answer, an EOS appended when missing), so held-out figures speak of the same sequences
the loss saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class PreferenceScores:
    pairs: int
    chosen_logp: float  # mean over pairs of the mean per-token log-prob of the chosen answer
    rejected_logp: float
    accuracy: float  # share of pairs where chosen scores higher
    gap: float  # mean of (chosen - rejected)

    def to_dict(self) -> dict:
        return asdict(self)


def _answer_ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    start = len(prompt_ids)
    if full_ids[:start] != prompt_ids:  # a token merged across the boundary (TRL does the same)
        start -= 1
    prompt_ids, answer_ids = full_ids[:start], full_ids[start:]
    bos = tokenizer.bos_token_id
    if bos is not None and (not prompt_ids or prompt_ids[0] != bos):
        prompt_ids = [bos] + prompt_ids
    eos = tokenizer.eos_token_id
    if eos is not None and (not answer_ids or answer_ids[-1] != eos):
        answer_ids = answer_ids + [eos]
    return prompt_ids, answer_ids


@torch.no_grad()
def answer_logps(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 8,
                 max_length: int | None = None) -> list[float]:
    """Mean per-token log-prob of each answer given its prompt."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    for start in range(0, len(prompts), batch_size):
        seqs, masks = [], []
        for prompt, answer in zip(prompts[start:start + batch_size], answers[start:start + batch_size]):
            p, a = _answer_ids(tokenizer, prompt, answer)
            if max_length:
                a = a[: max(1, max_length - len(p))]
            seqs.append(p + a)
            masks.append([0] * len(p) + [1] * len(a))
        width = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        target_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=device)[:, 1:]
        logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
        token_logps = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        mean = (token_logps * target_mask).sum(-1) / target_mask.sum(-1)
        scores.extend(mean.tolist())
    return scores


def score_pairs(model, tokenizer, rows: list[dict], batch_size: int = 8, max_length: int | None = None) -> PreferenceScores:
    prompts = [r["prompt"] for r in rows]
    chosen = answer_logps(model, tokenizer, prompts, [r["chosen"] for r in rows], batch_size, max_length)
    rejected = answer_logps(model, tokenizer, prompts, [r["rejected"] for r in rows], batch_size, max_length)
    n = len(rows)
    gaps = [c - r for c, r in zip(chosen, rejected)]
    return PreferenceScores(
        pairs=n,
        chosen_logp=sum(chosen) / n,
        rejected_logp=sum(rejected) / n,
        accuracy=sum(g > 0 for g in gaps) / n,
        gap=sum(gaps) / n,
    )

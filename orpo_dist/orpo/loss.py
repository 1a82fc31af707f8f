"""The ORPO loss, as Hong et al. (2024) write it, and the figures TRL logs beside it.

    L_ORPO = L_SFT + lambda * L_OR                                  (lambda: the recipe's `beta`)
    L_OR   = -log sigmoid( log( odds(y_w | x) / odds(y_l | x) ) )
    odds(y | x) = P(y | x) / (1 - P(y | x))

with P(y | x) the length-normalised likelihood exp(mean log-prob of the answer's tokens) and L_SFT
the mean negative log-likelihood of the chosen sequence. With c, r the mean log-probs:

    log odds ratio = (c - r) - (log(1 - e^c) - log(1 - e^r))

computed in fp32 with a log(1 - e^x) that is stable near 0 and near -inf (log1mexp). The loss is
TRL's to the bit on the same log-probs: `nll - mean(beta * logsigmoid(log_odds))`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .forward import PolicyOutput

# Per pair, gathered from every rank and averaged: TRL's per-pair figures, in TRL's names.
PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/rejected", "logps/chosen")
# One value per micro-batch and rank, gathered and averaged.
BATCH_METRICS = ("logits/rejected", "logits/chosen", "nll_loss", "log_odds_ratio", "log_odds_chosen")
METRICS = PAIR_METRICS + BATCH_METRICS
_LOG_HALF = -math.log(2)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation: expm1 near 0, log1p(-exp) further down."""
    return torch.where(x < _LOG_HALF, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


class OrpoTerms(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    pair_values: torch.Tensor  # (pairs, len(PAIR_METRICS)), detached
    batch_values: torch.Tensor  # (len(BATCH_METRICS),), detached


def orpo_terms(out: PolicyOutput, beta: float, aux_loss_coef: float = 0.0) -> OrpoTerms:
    chosen, rejected = out.chosen_logps.float(), out.rejected_logps.float()
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    ratio = F.logsigmoid(log_odds)  # -L_OR per pair
    loss = out.nll - (beta * ratio).mean()
    if out.aux_loss is not None:
        loss = loss + aux_loss_coef * out.aux_loss

    chosen_rewards, rejected_rewards = (beta * chosen).detach(), (beta * rejected).detach()
    pair_values = torch.stack([chosen_rewards, rejected_rewards, (chosen_rewards > rejected_rewards).float(),
                               chosen_rewards - rejected_rewards, rejected.detach(), chosen.detach()], dim=1)
    batch_values = torch.stack([out.rejected_logits.detach().float(), out.chosen_logits.detach().float(),
                                out.nll.detach().float(), ratio.detach().mean(), log_odds.detach().mean()])
    return OrpoTerms(loss, pair_values, batch_values)

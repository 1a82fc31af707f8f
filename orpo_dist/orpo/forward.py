"""The two ORPO forwards behind one interface, and the padded one: TRL's algorithm.

A forward takes the outermost model (DDP, DeepSpeed and FSDP sync gradients only through their
own forward), the transformers CausalLM inside it, and a collated batch (orpo/collator.py), and
returns a PolicyOutput: what the loss (orpo/loss.py) and the logged figures need. Two exist:

- `PaddedForward` ("stock"): chosen and rejected stacked on the batch axis and padded to one
  length, the full-vocabulary logits of every position, as TRL's ORPOTrainer computes them. It
  runs every model transformers has; the fast step is tested against it and against TRL.
- `orpo/fast/forward.py:FastForward` ("fast"): shared-prompt rows, no padding, the head only
  where a loss term needs it.

Both are padding-side invariant: a batch padded on the left gives what the same batch padded on
the right gives. (TRL's step does not: on a left-padded batch its NLL also predicts each row's
first real token from the padding before it.) `logits/chosen` and `logits/rejected` average the
logits of the positions that predict a next token, padding never included (TRL's average covers
padding positions too, so it moves with how much padding a batch has).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..data.truncation import LABEL_PAD

SIDES = ("chosen", "rejected")


class PolicyOutput(NamedTuple):
    chosen_logps: torch.Tensor  # (pairs,): mean log-prob per chosen answer token
    rejected_logps: torch.Tensor  # (pairs,)
    chosen_logits: torch.Tensor  # scalar: mean logit at the chosen sequences' predicting positions
    rejected_logits: torch.Tensor  # scalar
    nll: torch.Tensor  # scalar: mean NLL of the chosen sequences' tokens (answers only: completion_only_nll)
    aux_loss: torch.Tensor | None = None  # a mixture-of-experts router's auxiliary loss, when it has one


def causal_lm(model):
    """The transformers CausalLM inside PEFT (after accelerate's unwrapping of DDP/DeepSpeed/FSDP)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def right_padded(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, width: int, pad_token_id: int):
    """The same rows with their real tokens first, padded on the right to `width`: whatever the
    padding side (or padding in the middle) of the batch, every real token keeps its place."""
    order = torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)  # real positions first, in order
    ids, mask, labels = ids.gather(1, order), mask.gather(1, order), labels.gather(1, order)
    ids = ids.masked_fill(mask == 0, pad_token_id)
    labels = labels.masked_fill(mask == 0, LABEL_PAD)
    extra = width - ids.shape[1]
    if extra > 0:
        pad = ids.new_full((ids.shape[0], extra), pad_token_id)
        ids, mask = torch.cat([ids, pad], 1), torch.cat([mask, torch.zeros_like(pad)], 1)
        labels = torch.cat([labels, torch.full_like(pad, LABEL_PAD)], 1)
    return ids[:, :width], mask[:, :width], labels[:, :width]


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return (values * keep).sum() / keep.sum()


class PaddedForward:
    """TRL's ORPO forward: one pass over chosen and rejected stacked on the batch axis."""

    name = "stock"

    def __init__(self, pad_token_id: int, completion_only_nll: bool = False, aux_loss: bool = False):
        self.pad_token_id = pad_token_id
        self.completion_only_nll = completion_only_nll
        self.aux_loss = aux_loss  # the model's config asks for its router loss (output_router_logits)

    def prepare(self, lm) -> None:
        """Nothing to set up on the model (the fast forward wraps modules here)."""

    def __call__(self, model, lm, batch: dict) -> PolicyOutput:
        pairs = batch["chosen_input_ids"].shape[0]
        real = [batch[f"{side}_attention_mask"].sum(1).max() for side in SIDES]
        width = int(max(real))
        parts = [right_padded(batch[f"{s}_input_ids"], batch[f"{s}_attention_mask"], batch[f"{s}_labels"],
                              width, self.pad_token_id) for s in SIDES]
        ids, mask, labels = (torch.cat(tensors, 0) for tensors in zip(*parts))
        kwargs = {"output_router_logits": True} if self.aux_loss else {}
        outputs = model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
        logits = outputs.logits[:, :-1]

        # Position t predicts token t + 1; it is a target where both are real tokens.
        targets, predicts = ids[:, 1:], (mask[:, 1:] == 1) & (mask[:, :-1] == 1)
        answer = predicts & (labels[:, 1:] != LABEL_PAD)
        token_logps = _target_logps(logits, targets)
        in_nll = (answer if self.completion_only_nll else predicts)[:pairs]
        nll = -_masked_mean(token_logps[:pairs], in_nll)
        logps = (token_logps * answer).sum(-1) / answer.sum(-1)
        with torch.no_grad():
            row_means = logits.mean(-1).float()
        return PolicyOutput(
            chosen_logps=logps[:pairs], rejected_logps=logps[pairs:],
            chosen_logits=_masked_mean(row_means[:pairs], predicts[:pairs]),
            rejected_logits=_masked_mean(row_means[pairs:], predicts[pairs:]),
            nll=nll, aux_loss=getattr(outputs, "aux_loss", None) if self.aux_loss else None,
        )


def _target_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, as TRL's selective_log_softmax computes it: one
    row at a time, so no second full-vocabulary tensor of the whole batch is kept for the backward
    (fp32: logit - logsumexp; half precision: log_softmax in the logits' own dtype)."""
    if logits.dtype in (torch.float32, torch.float64):
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return logits.gather(-1, targets[..., None])[..., 0] - lse
    return torch.stack([torch.log_softmax(row, dim=-1).gather(-1, t[:, None])[:, 0]
                        for row, t in zip(logits, targets)]).float()

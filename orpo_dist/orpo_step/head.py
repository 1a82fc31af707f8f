"""Log-probs of chosen target tokens from hidden states, in chunks: never the full logits.

The vocabulary projection is called as the model's own module (`lm_head`, or whatever
`get_output_embeddings()` returns), one chunk of target positions at a time, under activation
checkpointing: the forward keeps only each chunk's (log-prob, mean logit), and the backward
recomputes one chunk's logits at a time. Calling the module rather than its weight keeps
whatever wraps it working unchanged: tied embeddings (the same Parameter), a LoRA adapter on the
head, and DeepSpeed ZeRO-3, whose hooks gather the partitioned weight for each call (and keep it
gathered between consecutive calls within the reuse distance).

Peak extra memory: one chunk of fp32 logits (chunk x vocab x 4 bytes, about 200 MB for 1,024
positions of a 49k vocabulary) instead of 2 x batch x length x vocab.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor):
    logits = head(hidden).float()
    # Same arithmetic as TRL's selective_log_softmax for fp32 logits: logit - logsumexp.
    logps = logits.gather(-1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    return logps, logits.detach().mean(-1)


def _gathered(params):
    """The full weights of a ZeRO-3-partitioned module for the block (a collective), else as is."""
    params = [p for p in params if p is not None]
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


class _FrozenHeadLogps(torch.autograd.Function):
    """Target log-probs through a frozen linear head, gradient for the hidden states only.

    Forward and backward each gather a ZeRO-3-partitioned weight once (the same number of
    collectives on every rank, whatever its number of chunks) and then loop over the chunks; the
    backward recomputes each chunk's logits from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, hidden, tokens, head, chunk_size):
        logps, means, lses = [], [], []
        with _gathered([head.weight, head.bias]), torch.no_grad():
            for start in range(0, hidden.shape[0], chunk_size):
                logits = torch.nn.functional.linear(hidden[start:start + chunk_size], head.weight, head.bias).float()
                lse = torch.logsumexp(logits, dim=-1)
                logps.append(logits.gather(-1, tokens[start:start + chunk_size, None])[:, 0] - lse)
                means.append(logits.mean(-1))
                lses.append(lse)
        ctx.save_for_backward(hidden, tokens, torch.cat(lses))
        ctx.head, ctx.chunk_size = head, chunk_size
        means = torch.cat(means)
        ctx.mark_non_differentiable(means)
        return torch.cat(logps), means

    @staticmethod
    def backward(ctx, grad_logps, _grad_means):
        hidden, tokens, lse = ctx.saved_tensors
        head, chunk = ctx.head, ctx.chunk_size
        grad_hidden = torch.empty_like(hidden)
        with _gathered([head.weight, head.bias]), torch.no_grad():
            weight = head.weight
            for start in range(0, hidden.shape[0], chunk):
                end = start + chunk
                logits = torch.nn.functional.linear(hidden[start:end], weight, head.bias).float()
                # d logp / d logits = onehot(target) - softmax, scaled by the incoming gradient.
                grad_logits = torch.exp(logits - lse[start:end, None]).mul_(-grad_logps[start:end, None])
                grad_logits.scatter_add_(-1, tokens[start:end, None], grad_logps[start:end, None])
                grad_hidden[start:end] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
        return grad_hidden, None, None, None


def _is_frozen_linear(head) -> bool:
    return (type(head) is torch.nn.Linear and not head.weight.requires_grad
            and (head.bias is None or not head.bias.requires_grad))


def target_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor,
                 chunk_size: int | None = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (targets, hidden_size), tokens (targets,) -> (log-prob of each token, mean logit over
    the vocabulary at each position). chunk_size None or 0: one pass, logits materialised (the
    reference the chunked path is tested against).

    A frozen plain head (LoRA and QLoRA runs) goes through _FrozenHeadLogps; a trained or wrapped
    one (full fine-tuning, LoRA on the head) through checkpointed calls of the module itself."""
    if chunk_size and _is_frozen_linear(head) and hidden.requires_grad:
        return _FrozenHeadLogps.apply(hidden, tokens, head, chunk_size)
    if not chunk_size or (hidden.shape[0] <= chunk_size and not torch.is_grad_enabled()):
        return _chunk_logps(head, hidden, tokens)
    logps, means = [], []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], tokens[start:start + chunk_size]
        if torch.is_grad_enabled():
            lp, mean = checkpoint(_chunk_logps, head, h, t, use_reentrant=False)
        else:
            lp, mean = _chunk_logps(head, h, t)
        logps.append(lp)
        means.append(mean)
    return torch.cat(logps), torch.cat(means)

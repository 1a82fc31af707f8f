"""Log-probs of chosen target tokens from hidden states, in chunks: never the full logits.

The vocabulary projection is called as the model's own module (`lm_head`, or whatever
`get_output_embeddings()` returns), one chunk of target positions at a time. Calling the module
rather than its weight keeps whatever wraps it working unchanged: tied embeddings (the same
Parameter), a LoRA adapter on the head, and DeepSpeed ZeRO-3, whose hooks gather the partitioned
weight for each call (and keep it gathered between consecutive calls within the reuse distance).

The backward needs each chunk's softmax. When the fp32 logits of all the micro-batch's targets
fit `keep_budget` bytes (orpo_logits_budget_mb) they are kept from the forward: three matrix
products per target (forward, and the two gradients; two for a frozen head). Above it they are
recomputed chunk by chunk in the backward (activation checkpointing; one product more), and the
peak extra memory is one chunk of fp32 logits (chunk x vocab x 4 bytes, about 200 MB for 1,024
positions of a 49k vocabulary) instead of 2 x batch x length x vocab.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint

from ...model_rules import DEFAULT_CHUNK_SIZE, keeps_logits  # the planner asks the same question


def _softcapped(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """`cap * tanh(logits / cap)`: the soft-capping some architectures apply after the head."""
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _chunk_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor, cap: float | None = None):
    logits = _softcapped(head(hidden).float(), cap)
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
    backward takes each chunk's softmax from the forward (`keep`) or recomputes it from the saved
    log-sum-exp. With a soft-cap (`cap`) the logits are always recomputed: the backward needs the
    tanh's slope besides the softmax."""

    @staticmethod
    def forward(ctx, hidden, tokens, head, chunk_size, keep, cap):
        logps, means, lses, probs = [], [], [], []
        keep = keep and cap is None
        with _gathered([head.weight, head.bias]), torch.no_grad():
            for start in range(0, hidden.shape[0], chunk_size):
                logits = torch.nn.functional.linear(hidden[start:start + chunk_size], head.weight, head.bias).float()
                logits = _softcapped(logits, cap)
                lse = torch.logsumexp(logits, dim=-1)
                logps.append(logits.gather(-1, tokens[start:start + chunk_size, None])[:, 0] - lse)
                means.append(logits.mean(-1))
                lses.append(lse)
                if keep:
                    probs.append(logits.sub_(lse[:, None]).exp_())  # in place: no second chunk-sized tensor
        ctx.save_for_backward(hidden, tokens, torch.cat(lses), *probs)
        ctx.head, ctx.chunk_size, ctx.cap = head, chunk_size, cap
        means = torch.cat(means)
        ctx.mark_non_differentiable(means)
        return torch.cat(logps), means

    @staticmethod
    def backward(ctx, grad_logps, _grad_means):
        hidden, tokens, lse, *probs = ctx.saved_tensors
        head, chunk, cap = ctx.head, ctx.chunk_size, ctx.cap
        grad_hidden = torch.empty_like(hidden)
        with _gathered([head.weight, head.bias]), torch.no_grad():
            weight = head.weight
            for i, start in enumerate(range(0, hidden.shape[0], chunk)):
                end = start + chunk
                slope = None
                if probs:
                    softmax = probs[i]
                else:
                    logits = torch.nn.functional.linear(hidden[start:end], weight, head.bias).float()
                    if cap is not None:
                        tanh = torch.tanh(logits / cap)
                        slope, logits = 1 - tanh * tanh, tanh.mul_(cap)  # d(cap tanh(z/cap))/dz = 1 - tanh^2
                    softmax = logits.sub_(lse[start:end, None]).exp_()
                # d logp / d logits = onehot(target) - softmax, scaled by the incoming gradient.
                grad_logits = softmax.mul(-grad_logps[start:end, None])
                grad_logits.scatter_add_(-1, tokens[start:end, None], grad_logps[start:end, None])
                if slope is not None:
                    grad_logits.mul_(slope)
                grad_hidden[start:end] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
        return grad_hidden, None, None, None, None, None


def _plain_class(module: torch.nn.Module) -> type:
    """The module's own class: FSDP2 swaps a sharded module's class for FSDP<Class>(FSDPModule, Class)."""
    cls = type(module)
    if cls.__name__.startswith("FSDP") and len(cls.__bases__) == 2:
        return cls.__bases__[1]
    return cls


def _is_frozen_linear(head) -> bool:
    # A plain nn.Linear only: bitsandbytes' Linear4bit/8bitLt subclass it with packed weights.
    return (_plain_class(head) is torch.nn.Linear and not head.weight.requires_grad
            and (head.bias is None or not head.bias.requires_grad))


def _chunks_on_every_rank(head: torch.nn.Module, n_chunks: int, device) -> int:
    """Under ZeRO-3 each call of the head gathers its partitioned weight: a collective, which
    every rank must issue equally often. Ranks hold different numbers of targets, so they agree
    on the largest number of chunks (one small all-reduce) and the ones with fewer run the rest
    on a dummy row. Without ZeRO-3: n_chunks as it is."""
    if not any(hasattr(p, "ds_id") for p in head.parameters()):
        return n_chunks
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return n_chunks
    count = torch.tensor([n_chunks], device=device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    return int(count.item())


def target_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor,
                 chunk_size: int | None = DEFAULT_CHUNK_SIZE, keep_budget: int = 0,
                 softcap: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (targets, hidden_size), tokens (targets,) -> (log-prob of each token, mean logit over
    the vocabulary at each position). chunk_size None or 0: one pass, logits materialised (the
    reference the chunked path is tested against). keep_budget: bytes of fp32 logits that may be
    kept for the backward (0: always recompute). softcap: the architecture's soft-cap after the
    head (architectures.logit_softcap), or None.

    A frozen plain head (LoRA and QLoRA runs) goes through _FrozenHeadLogps; a trained or wrapped
    one (full fine-tuning, LoRA on the head) through calls of the module itself, checkpointed
    unless the logits are kept."""
    keep = keeps_logits(hidden.shape[0], getattr(head, "out_features", 0), keep_budget)  # unknown: recompute
    if chunk_size and _is_frozen_linear(head) and hidden.requires_grad:
        return _FrozenHeadLogps.apply(hidden, tokens, head, chunk_size, keep, softcap)
    size = chunk_size or max(hidden.shape[0], 1)
    n_chunks = max(1, -(-hidden.shape[0] // size))
    calls = _chunks_on_every_rank(head, n_chunks, hidden.device)
    grad = torch.is_grad_enabled()
    logps, means, padding = [], [], None
    for i in range(calls):
        start = i * size if i < n_chunks else 0
        end = start + size if i < n_chunks else 1  # a dummy row, for ZeRO-3's collectives only
        h, t = hidden[start:end], tokens[start:end]
        if grad and chunk_size and not keep:
            lp, mean = checkpoint(_chunk_logps, head, h, t, softcap, use_reentrant=False)
        else:
            lp, mean = _chunk_logps(head, h, t, softcap)
        if i < n_chunks:
            logps.append(lp)
            means.append(mean)
        else:  # zero weight, but in the graph: its backward (and its gathers) run too
            padding = lp.sum() * 0 if padding is None else padding + lp.sum() * 0
    logps = torch.cat(logps)
    return (logps if padding is None else logps + padding), torch.cat(means)

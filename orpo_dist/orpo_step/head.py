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

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor):
    logits = head(hidden).float()
    # Same arithmetic as TRL's selective_log_softmax for fp32 logits: logit - logsumexp.
    logps = logits.gather(-1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    return logps, logits.detach().mean(-1)


def target_logps(head: torch.nn.Module, hidden: torch.Tensor, tokens: torch.Tensor,
                 chunk_size: int | None = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (targets, hidden_size), tokens (targets,) -> (log-prob of each token, mean logit over
    the vocabulary at each position). chunk_size None or 0: one pass, logits materialised (the
    reference the chunked path is tested against)."""
    if not chunk_size or hidden.shape[0] <= chunk_size and not torch.is_grad_enabled():
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

"""One forward over packed shared-prefix rows, to the final hidden states of the targets only.

Shared by the fast forward (orpo/fast/forward.py) and the held-out scorer (eval/scoring.py),
so that evaluation measures log-probs exactly the way training computes them, and as cheaply.
"""

from __future__ import annotations

import torch

from ...architectures import attention_windows
from .packing import PackedBatch


def attention_mask_for(lm, packed: PackedBatch, flex: bool):
    """The shared-prefix mask in the form the model's attention implementation takes: one mask,
    or one per layer type where the decoder takes them so (sliding-window layers: architectures.py)."""
    attn = getattr(lm.config, "_attn_implementation", "sdpa")
    dtype = None if attn == "sdpa" else lm.get_input_embeddings().weight.dtype
    by_window = {}  # layer types with the same window share one mask

    def mask(window):
        if window not in by_window:
            by_window[window] = packed.block_mask(window) if flex else packed.attention_mask(dtype, window)
        return by_window[window]

    windows = attention_windows(lm.config)
    if None in windows:
        return mask(windows[None])
    return {kind: mask(window) for kind, window in windows.items()}


def target_hidden(model, lm, packed: PackedBatch, flex: bool = False, then=None):
    """(targets, hidden_size): the last hidden state at every target position of `packed`, or, with
    `then`, what then(those hidden states) returns.

    `model` is the outermost module (DDP and DeepSpeed sync gradients only through their own
    forward) and `lm` the transformers CausalLM inside it. The hidden states are taken from the
    decoder by a hook, and the CausalLM projects just one position per row (logits_to_keep=1);
    callers run the head on the targets only (head.target_logps). `then` runs inside the hook,
    that is inside the model's own forward, where FSDP2 keeps the final norm and the head
    unsharded (it reshards them, or frees their gathered copies, once its forward is over)."""
    captured = {}

    def keep_hidden(_module, _inputs, output):
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        hidden = hidden.reshape(-1, hidden.shape[-1])[packed.target_positions]
        captured["result"] = hidden if then is None else then(hidden)

    hook = lm.get_decoder().register_forward_hook(keep_hidden)
    try:
        model(input_ids=packed.input_ids, attention_mask=attention_mask_for(lm, packed, flex),
              position_ids=packed.position_ids, use_cache=False, logits_to_keep=1)
    finally:
        hook.remove()
    return captured["result"]


def per_pair_mean(values: torch.Tensor, pairs: torch.Tensor, keep: torch.Tensor, num_pairs: int) -> torch.Tensor:
    """Mean of `values[keep]` per pair id."""
    sums = values.new_zeros(num_pairs).index_add(0, pairs[keep], values[keep])
    counts = values.new_zeros(num_pairs).index_add(0, pairs[keep], torch.ones_like(values[keep]))
    return sums / counts

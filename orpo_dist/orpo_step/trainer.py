"""The fast ORPO step: orpo-dist's ORPOTrainer (TRL's, plus max_prompt_length) with its forward
replaced, everything else unchanged.

Only `concatenated_forward` differs. It returns what TRL's returns (per-pair mean log-probs of
chosen and rejected, the chosen NLL, and the mean logits), so TRL's loss, metrics, logging,
evaluation, checkpointing and distributed code run exactly as in the stock step, and
metrics.jsonl has the same keys with the same meaning. One difference in a logged figure:
logits/chosen and logits/rejected average over real positions only; the stock step's average also
covers padding positions, so it moves with how much padding a batch had.
"""

from __future__ import annotations

import torch
from ..orpo_trainer import OrpoDistTrainer
from . import checkpointing
from .forward import per_pair_mean, target_hidden
from .head import target_logps
from .packing import attention_cost, pack_pairs


def causal_lm(accelerator, model):
    """The transformers CausalLM inside whatever wraps it (DDP, DeepSpeed, torch.compile, PEFT)."""
    inner = accelerator.unwrap_model(model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


class FastOrpoTrainer(OrpoDistTrainer):
    """ORPO with shared-prompt rows and a chunked vocabulary projection (see orpo_step/)."""

    def __init__(self, *args, chunk_size: int = 1024, keep_budget: int = 0, checkpoint_policy: str = "none",
                 completion_only_nll: bool = False, share_prefix: bool = True, pack_rows: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        checkpointing.apply(causal_lm(self.accelerator, self.model).get_decoder(), checkpoint_policy)
        self.chunk_size = chunk_size
        self.keep_budget = keep_budget  # bytes of head logits kept for the backward (head.py)
        self.completion_only_nll = completion_only_nll
        self.share_prefix = share_prefix
        self.pack_rows = pack_rows
        self.last_packed = None  # the last step's PackedBatch, for token counts (bench, tests)

    def concatenated_forward(self, model, batch):
        lm = causal_lm(self.accelerator, model)
        # FlexAttention compiles per shape: rounding rows up to its 128-token blocks keeps the
        # number of shapes (and recompilations) small.
        flex = getattr(lm.config, "_attn_implementation", "sdpa") == "flex_attention"
        packed = pack_pairs(batch, self.padding_value, self.share_prefix, self.pack_rows, self.completion_only_nll,
                            pad_to_multiple_of=128 if flex else 1,
                            cost_per_pair=0.0 if flex else attention_cost(lm.config))
        self.last_packed = packed
        hidden = target_hidden(model, lm, packed, flex)
        logps, mean_logits = target_logps(lm.get_output_embeddings(), hidden, packed.target_tokens, self.chunk_size,
                                        self.keep_budget)

        nll = -logps[packed.in_nll].sum() / packed.in_nll.sum()
        n, pairs = packed.num_pairs, packed.target_pairs
        chosen_logps = per_pair_mean(logps, pairs, packed.in_chosen, n)
        rejected_logps = per_pair_mean(logps, pairs, packed.in_rejected, n)
        chosen_logits = mean_logits[packed.in_chosen_seq].mean()
        rejected_logits = mean_logits[packed.in_rejected_seq].mean()
        return chosen_logps, rejected_logps, chosen_logits, rejected_logits, nll

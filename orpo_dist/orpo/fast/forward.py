"""The fast ORPO forward: every unique token through the model once, the head only at targets.

Returns what the padded forward returns (orpo/forward.py: per-pair mean log-probs of chosen and
rejected, the chosen NLL and the mean logits), so the loss, the metrics, logging, evaluation,
checkpointing and the distributed code are the same for both; metrics.jsonl has the same keys
with the same meaning. How: packing.py (shared-prefix rows), hidden.py (the decoder's hidden
states at the targets), head.py (the vocabulary projection in chunks), checkpointing.py (what each
layer recomputes in the backward).
"""

from __future__ import annotations

from ...architectures import logit_softcap
from ...model_rules import DEFAULT_CHUNK_SIZE
from ..forward import PolicyOutput
from . import checkpointing
from .head import target_logps
from .hidden import per_pair_mean, target_hidden
from .packing import attention_cost, pack_pairs


def _sharded_by_fsdp2(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


class FastForward:
    name = "fast"

    def __init__(self, pad_token_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE, keep_budget: int = 0,
                 checkpoint_policy: str = "none", completion_only_nll: bool = False, share_prefix: bool = True,
                 pack_rows: bool = True):
        self.pad_token_id = pad_token_id
        self.chunk_size = chunk_size
        self.keep_budget = keep_budget  # bytes of head logits kept for the backward (head.py)
        self.checkpoint_policy = checkpoint_policy
        self.completion_only_nll = completion_only_nll
        self.share_prefix = share_prefix  # both switches exist to measure each technique alone
        self.pack_rows = pack_rows
        self.last_packed = None  # the last batch as packed, for token counts (bench, tests)

    def prepare(self, lm) -> None:
        """Wrap the decoder's norms and MLPs for the recipe's activation checkpointing."""
        checkpointing.apply(lm.get_decoder(), self.checkpoint_policy)

    def __call__(self, model, lm, batch: dict) -> PolicyOutput:
        # FlexAttention compiles per shape: rounding rows up to its 128-token blocks keeps the
        # number of shapes (and recompilations) small.
        flex = getattr(lm.config, "_attn_implementation", "sdpa") == "flex_attention"
        packed = pack_pairs(batch, self.pad_token_id, self.share_prefix, self.pack_rows, self.completion_only_nll,
                            pad_to_multiple_of=128 if flex else 1,
                            cost_per_pair=0.0 if flex else attention_cost(lm.config))
        self.last_packed = packed
        head, cap = lm.get_output_embeddings(), logit_softcap(lm.config)

        def head_logps(hidden):
            return target_logps(head, hidden, packed.target_tokens, self.chunk_size, self.keep_budget, cap)

        if _sharded_by_fsdp2(model):
            # FSDP2 keeps the head (and final norm) gathered only within the model's forward: run
            # it there. ZeRO-3 gathers it for each call instead, which its hooks cannot do inside
            # the forward that already holds it.
            logps, mean_logits = target_hidden(model, lm, packed, flex, then=head_logps)
        else:
            logps, mean_logits = head_logps(target_hidden(model, lm, packed, flex))
        n, pairs = packed.num_pairs, packed.target_pairs
        return PolicyOutput(
            chosen_logps=per_pair_mean(logps, pairs, packed.in_chosen, n),
            rejected_logps=per_pair_mean(logps, pairs, packed.in_rejected, n),
            chosen_logits=mean_logits[packed.in_chosen_seq].mean(),
            rejected_logits=mean_logits[packed.in_rejected_seq].mean(),
            nll=-logps[packed.in_nll].sum() / packed.in_nll.sum(),
        )

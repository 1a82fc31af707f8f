"""Which ORPO forward a run uses: the fast one wherever it is exact for the model, else the padded one.

`orpo_step: auto` (the default) takes the fast forward when every condition below holds and falls
back to the padded forward (TRL's algorithm, "stock") with a one-line notice otherwise; `fast`
refuses to start instead of falling back; `stock` always takes the padded forward.

The fast forward rebuilds the logits from the final hidden states with the model's own head
module and feeds the decoder a 4D mask, so it is exact for the architecture families listed in
orpo_dist/architectures.py (what they apply after the head, how their layers take masks) and for
attention implementations that take a 4D mask as given (sdpa, eager; flex_attention on a GPU).
"""

from __future__ import annotations

from .. import architectures
from ..errors import UserError
from .config import STEPS

MASK_ATTENTION = ("sdpa", "eager", "flex_attention")


def unsupported_reason(config, aux_loss: bool = False, device_type: str = "cpu") -> str | None:
    """Why the fast forward is not exact for this model, or None when it is."""
    reason = architectures.unsupported_reason(config)
    if reason:
        return reason
    attn = getattr(config, "_attn_implementation", None) or "sdpa"
    if attn not in MASK_ATTENTION:
        return f"attn_implementation {attn!r} does not take a shared-prompt mask (use sdpa, eager or flex_attention)"
    if attn == "flex_attention" and device_type == "cpu":
        return "FlexAttention has no backward pass on the CPU in this torch (use sdpa there)"
    if aux_loss:
        # The stock step's router loss is taken over the padded batch, each prompt twice; the fast
        # step runs each prompt once, so its router sees other tokens and its loss would differ.
        return "the model's router auxiliary loss (output_router_logits) is computed over padded rows"
    return None


def use_fast_step(step: str, config, aux_loss: bool = False, log=print, device_type: str = "cpu") -> bool:
    if step not in STEPS:
        raise UserError(f"orpo_step {step!r} is not one of {', '.join(STEPS)}")
    if step == "stock":
        return False
    reason = unsupported_reason(config, aux_loss, device_type)
    if reason is None:
        return True
    if step == "fast":
        raise UserError(f"the fast ORPO step cannot run this model: {reason}. Set orpo_step: stock.")
    log(f"note: the fast ORPO step is not exact here ({reason}); using the stock step (padded, TRL's algorithm)")
    return False


def attention_for_device(config, device_type: str) -> str | None:
    """The attention the fast step should switch a model on SDPA to, or None to keep it.

    On GPUs FlexAttention skips the blocks a pair's mask leaves empty, where SDPA with a dense
    mask cannot use its flash kernel and computes every row x row score. Untested here (no GPU):
    see README, "Fast ORPO step"."""
    if device_type != "cuda" or getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return None
    return "flex_attention"


def choose_forward(args, lm, pad_token_id: int, log=print, switch_attention: bool = False):
    """The forward for the recipe's `orpo_step` on this model (a transformers CausalLM).
    `switch_attention`: the recipe left attn_implementation unset, so on a GPU the fast forward
    may move the model from SDPA to FlexAttention."""
    import torch

    from .forward import PaddedForward

    config = lm.config
    device_type = "cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu"
    aux_loss = bool(getattr(config, "output_router_logits", False))
    if not use_fast_step(args.orpo_step, config, aux_loss, log=log, device_type=device_type):
        return PaddedForward(pad_token_id, args.completion_only_nll, aux_loss)
    if switch_attention and (attention := attention_for_device(config, device_type)):
        lm.set_attn_implementation(attention)
        log(f"fast ORPO step: attention switched to {attention} on the GPU")
    from .fast.forward import FastForward

    return FastForward(
        pad_token_id, chunk_size=args.orpo_chunk_size, keep_budget=args.orpo_logits_budget_mb * 2**20,
        # HF's whole-layer checkpointing already recomputes everything the finer policies would.
        checkpoint_policy="none" if args.gradient_checkpointing else args.orpo_activation_checkpointing,
        completion_only_nll=args.completion_only_nll,
    )

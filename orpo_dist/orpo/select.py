"""Which ORPO forward a run uses: the fast one wherever it is exact for the model, else the padded one.

`orpo_step: auto` (the default) takes the fast forward when every condition below holds and falls
back to the padded forward (TRL's algorithm, "stock") with a one-line notice otherwise; `fast`
refuses to start instead of falling back; `stock` always takes the padded forward.

The fast forward rebuilds the logits from the final hidden states with the model's own head
module, so it is exact only for architectures whose logits are `lm_head(last_hidden_state)` with
nothing after it (no soft-capping, no logit scale), and for attention implementations that take a
4D mask as given (sdpa, eager).
"""

from __future__ import annotations

from ..errors import UserError
from ..model_rules import FAST_STEP_ARCHITECTURES as EXACT_ARCHITECTURES
from .config import STEPS

MASK_ATTENTION = ("sdpa", "eager", "flex_attention")
# Config fields that change logits after the head on some architectures.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def unsupported_reason(config, aux_loss: bool = False, device_type: str = "cpu") -> str | None:
    """Why the fast forward is not exact for this model, or None when it is."""
    model_type = getattr(config, "model_type", None)
    if model_type not in EXACT_ARCHITECTURES:
        return f"architecture {model_type!r} is not one of {', '.join(EXACT_ARCHITECTURES)}"
    for name in LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 0, 1, 1.0):
            return f"the model's config sets {name}={value}, applied after the head"
    attn = getattr(config, "_attn_implementation", None) or "sdpa"
    if attn not in MASK_ATTENTION:
        return f"attn_implementation {attn!r} does not take a shared-prompt mask (use sdpa, eager or flex_attention)"
    if attn == "flex_attention" and device_type == "cpu":
        return "FlexAttention has no backward pass on the CPU in this torch (use sdpa there)"
    if aux_loss:
        return "router auxiliary loss (output_router_logits) is not supported"
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

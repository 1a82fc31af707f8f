"""Which ORPO step a run uses: the fast one wherever it is exact for the model, else TRL's.

`orpo_step: auto` (the default) takes the fast step when every condition below holds and falls
back to TRL's stock step with a one-line notice otherwise; `fast` refuses to start instead of
falling back; `stock` is TRL's ORPOTrainer unchanged.

The fast step rebuilds the logits from the final hidden states with the model's own head module,
so it is exact only for architectures whose logits are `lm_head(last_hidden_state)` with nothing
after it (no soft-capping, no logit scale), and for attention implementations that take a 4D
mask as given (sdpa, eager).
"""

from __future__ import annotations

from ..errors import UserError
from ..model_rules import FAST_STEP_ARCHITECTURES as EXACT_ARCHITECTURES

STEPS = ("auto", "fast", "stock")
MASK_ATTENTION = ("sdpa", "eager", "flex_attention")
# Config fields that change logits after the head on some architectures.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def unsupported_reason(config, is_encoder_decoder: bool = False, aux_loss: bool = False,
                       device_type: str = "cpu") -> str | None:
    """Why the fast step is not exact for this model, or None when it is."""
    model_type = getattr(config, "model_type", None)
    if is_encoder_decoder:
        return "encoder-decoder models are not supported"
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


def use_fast_step(step: str, config, completion_only_nll: bool = False, is_encoder_decoder: bool = False,
                  aux_loss: bool = False, log=print, device_type: str = "cpu") -> bool:
    if step not in STEPS:
        raise UserError(f"orpo_step {step!r} is not one of {', '.join(STEPS)}")
    if step == "stock":
        if completion_only_nll:
            raise UserError("completion_only_nll needs the fast step: TRL's stock step always puts the prompt "
                            "in the NLL term. Set orpo_step: auto (or fast), or drop completion_only_nll.")
        return False
    reason = unsupported_reason(config, is_encoder_decoder, aux_loss, device_type)
    if reason is None:
        return True
    if step == "fast" or completion_only_nll:
        raise UserError(f"the fast ORPO step cannot run this model: {reason}. Set orpo_step: stock"
                        + (" and drop completion_only_nll." if completion_only_nll else "."))
    log(f"note: the fast ORPO step is not exact here ({reason}); using TRL's stock step")
    return False


def attention_for_device(config, device_type: str, requested: str | None) -> str | None:
    """The attention the fast step should switch the model to, or None to keep it.

    On GPUs FlexAttention skips the blocks a pair's mask leaves empty, where SDPA with a dense
    mask cannot use its flash kernel and computes every row x row score. Only when the recipe did
    not choose an attention itself. Untested here (no GPU): see README, "Fast ORPO step"."""
    if requested or device_type != "cuda" or getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return None
    return "flex_attention"

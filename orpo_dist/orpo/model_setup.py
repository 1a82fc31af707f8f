"""What the trainer does to a model before training: load it when given a name, wrap it in a
PEFT adapter when given a LoRA config (QLoRA: k-bit preparation first), switch off its dropout.
TRL's ORPOTrainer's rules, one function each."""

from __future__ import annotations

import torch

from ..errors import UserError
from .config import ENCODER_DECODER_REFUSAL


def load_named_model(name: str, args):
    """AutoModelForCausalLM.from_pretrained(name) with the config's model_init_kwargs (a `dtype`
    string becomes a torch dtype) and trust_remote_code."""
    from transformers import AutoModelForCausalLM

    kwargs = dict(args.model_init_kwargs or {})
    dtype = kwargs.get("dtype", "auto")
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise UserError(f"model_init_kwargs: dtype {dtype!r} is not a torch dtype (float32, bfloat16, ...) "
                            "or 'auto'")
        dtype = getattr(torch, dtype)
    kwargs["dtype"] = dtype
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    return AutoModelForCausalLM.from_pretrained(name, **kwargs)


def check_decoder_only(model) -> None:
    if getattr(model.config, "is_encoder_decoder", False):
        raise UserError(f"{type(model).__name__}: {ENCODER_DECODER_REFUSAL}")


def _quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def _inputs_require_grad(model) -> None:
    """Gradient checkpointing with frozen embeddings needs inputs that require grad, or the
    checkpointed layers get no gradient (silently)."""
    model.enable_input_require_grads()


def with_adapter(model, peft_config, args):
    """The model wrapped for LoRA/QLoRA training (TRL's order of operations); None: unchanged,
    with input gradients on when gradient checkpointing needs them."""
    if peft_config is None:
        if args.gradient_checkpointing:
            _inputs_require_grad(model)
        return model
    from peft import PeftConfig, get_peft_model, prepare_model_for_kbit_training

    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"peft_config must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}")
    if hasattr(model, "peft_config"):
        raise UserError("the model already carries a PEFT adapter and a peft_config was given too: merge and "
                        "unload the adapter first, or pass the PeftModel without peft_config")
    if _quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
    elif args.gradient_checkpointing:
        _inputs_require_grad(model)
    kwargs = {}
    plugin = getattr(args, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3 and not _quantized(model):
        # ZeRO-3 gathers parameters in the dtype of the first persistent one: LoRA weights upcast to
        # fp32 beside a bf16 base fail its first step (TRL#6089, DeepSpeed#8072). Keep them in the base's.
        kwargs["autocast_adapter_dtype"] = False
    return get_peft_model(model, peft_config, **kwargs)


def cast_for_bf16_kbit(model, args) -> bool:
    """A 4-bit base in bf16: norms in fp32, embeddings and head in bf16 (TRL's rule). Returns
    whether it was done, in which case the loss runs under autocast."""
    if not (args.bf16 and getattr(model, "is_loaded_in_4bit", False)):
        return False
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm) or "norm" in name:
            module.to(torch.float32)
        elif any(part in name for part in ("lm_head", "embed_tokens", "wte", "wpe")):
            weight = getattr(module, "weight", None)
            if weight is not None and weight.dtype == torch.float32:
                module.to(torch.bfloat16)
    return True


def disable_dropout(model) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0

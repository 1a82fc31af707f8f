"""Rules about the model that the training code and the memory planner must apply identically.

orpo_dist.model builds the model a run trains; orpo_dist.planner counts that model's parameters
and memory before any GPU is booked. Both take these rules from here, so the planner cannot
describe a different model from the one training builds. No heavy imports.
"""

from __future__ import annotations

from typing import Any

from .architectures import ARCHITECTURES
from .errors import UserError

# Names of attention projections across common architectures: LoRA's targets when a recipe names none.
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv")

# The attention projections of llama-style models (q, k, v, o): LoRA's usual targets.
LLAMA_ATTENTION = ATTENTION_PROJECTIONS[:4]

METHODS = ("full", "lora", "qlora")

DEFAULT_MAX_LENGTH = 1024  # tokens per sequence, prompt + answer: TRL's ORPOConfig default
DEFAULT_CHUNK_SIZE = 1024  # the fast step's positions per chunk of the vocabulary projection

# Where the fast ORPO step (orpo_dist/orpo/fast/) is exact, and what the planner plans it for: the
# model types of architectures.py's families.
FAST_STEP_ARCHITECTURES = ARCHITECTURES


# The fast step's activation checkpointing inside each layer (orpo/fast/checkpointing.py) and the
# head logits it keeps for the backward (orpo/fast/head.py): what the planner counts.
CHECKPOINT_POLICIES = ("none", "norms", "mlp-act", "norms+mlp-act", "mlp", "norms+mlp")
DEFAULT_CHECKPOINT_POLICY = "norms+mlp"  # measured: 0.38x -> 0.31x peak memory, speed within noise (README)
DEFAULT_LOGITS_BUDGET_MB = 1024


def keeps_logits(targets: int, vocab_size: int, keep_budget: int) -> bool:
    """Whether the fp32 logits of `targets` positions fit the budget (bytes) and are kept for the
    backward rather than recomputed chunk by chunk."""
    return keep_budget > 0 and targets * vocab_size * 4 <= keep_budget


def plans_fast_step(orpo_step: Any, model_type: str | None) -> bool:
    """Will a run with this `orpo_step` field take the fast step for this architecture? (The
    other fallbacks, soft-capping and the like, are rare on these architectures.)"""
    return str(orpo_step or "auto") != "stock" and model_type in FAST_STEP_ARCHITECTURES


def training_method(use_peft: Any, load_in_4bit: Any = False, load_in_8bit: Any = False) -> str:
    """full, lora or qlora, from a recipe's use_peft / load_in_4bit / load_in_8bit."""
    quantised = bool(load_in_4bit or load_in_8bit)
    if not use_peft:
        if quantised:
            raise UserError("a quantised model (load_in_4bit/8bit) can only be trained with LoRA: add use_peft: true")
        return "full"
    return "qlora" if quantised else "lora"


def method_label(method: str) -> str:
    return {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}[method]


def default_lora_targets(linear_names) -> list[str] | str:
    """LoRA targets when the recipe names none: the attention projections the model has, in
    ATTENTION_PROJECTIONS order, or every linear layer when it has none of them."""
    names = set(linear_names)
    found = [n for n in ATTENTION_PROJECTIONS if n in names]
    return found or "all-linear"


def apply_config_overrides(config, overrides: dict[str, Any] | None):
    """Set a model config's fields from a recipe's model_config_overrides (in place; returns it).

    Every key must be a field of the config. When hidden_size or num_attention_heads changes and
    the recipe does not set head_dim itself, head_dim follows them (hidden_size // heads), as it
    would in a config written with those numbers; an explicit head_dim is kept.
    """
    if not overrides:
        return config
    if not isinstance(overrides, dict):
        raise UserError(f"model_config_overrides must be a mapping of config fields to values, got {overrides!r}")
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise UserError(f"model_config_overrides: {type(config).__name__} has no field {key!r}")
        setattr(config, key, value)
    reshaped = "hidden_size" in overrides or "num_attention_heads" in overrides
    if reshaped and "head_dim" not in overrides and getattr(config, "head_dim", None) is not None:
        hidden, heads = config.hidden_size, config.num_attention_heads
        if hidden % heads:
            raise UserError(f"model_config_overrides: hidden_size {hidden} is not a multiple of num_attention_heads "
                            f"{heads}; set head_dim explicitly")
        config.head_dim = hidden // heads
    return config

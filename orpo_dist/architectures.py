"""The architectures the fast ORPO step runs: one entry per family, saying how its layers differ.

The fast step (orpo/fast/) feeds the decoder shared-prompt rows with a 4D attention mask and
position ids, takes the final hidden states at the targets and projects them with the model's own
head. That is exact for a transformers CausalLM whose decoder takes such a mask and whose logits
are the head's output, up to what an entry below names:

- `masks`: how the decoder takes its mask. "one": one mask for every layer, full attention (llama,
  gemma: a `sliding_window` left in their config is ignored by the model, and so here);
  "one-windowed": one mask, which the model itself limits to `config.sliding_window` when that is
  set (mistral, phi3, mixtral, qwen3_moe); "by-layer-type": a dict keyed by `config.layer_types`
  ("full_attention", "sliding_attention"), the sliding ones limited to `config.sliding_window`
  (gemma2/3, qwen2/3 with use_sliding_window). A 4D mask given as one tensor is used as given by
  every layer, so the window must be in it.
- `mlp`: the form of the layers' MLP, for activation checkpointing (orpo/fast/checkpointing.py):
  "gated" `down_proj(act_fn(gate_proj(x)) * up_proj(x))`, "fused" (phi3) the same with gate and
  up in one `gate_up_proj`, "moe" a mixture of experts (its dense layers, if any, "gated").
- `logit_softcap`: the config field of a soft-cap applied after the head,
  `cap * tanh(logits / cap)` (gemma2; gemma3 when set), which the fast head applies too.

Adding a family is one entry here plus its tiny config in tests/test_architectures.py, which
proves the fast step equal to the stock one on it. No heavy imports: the planner reads this too.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK_FORMS = ("one", "one-windowed", "by-layer-type")
MLP_FORMS = ("gated", "fused", "moe")
LAYER_TYPES = ("full_attention", "sliding_attention")  # what "by-layer-type" masks are built for
# Config fields that change the logits after the head on some architectures; a family handles at
# most its own soft-cap, any other set to a value that changes the logits keeps the stock step.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass(frozen=True)
class Family:
    model_types: tuple[str, ...]
    masks: str = "one"
    mlp: str = "gated"
    logit_softcap: str | None = None

    def __post_init__(self):  # a misspelt form in a new entry fails at import, not as a silent default
        if self.masks not in MASK_FORMS or self.mlp not in MLP_FORMS:
            raise ValueError(f"Family {self.model_types}: masks must be one of {MASK_FORMS} and mlp one of "
                             f"{MLP_FORMS}, got {self.masks!r} and {self.mlp!r}")


FAMILIES = {
    "llama": Family(("llama", "gemma")),
    "mistral": Family(("mistral",), masks="one-windowed"),
    "qwen2": Family(("qwen2", "qwen3", "ministral", "smollm3"), masks="by-layer-type"),
    "gemma2": Family(("gemma2", "gemma3_text"), masks="by-layer-type", logit_softcap="final_logit_softcapping"),
    "phi3": Family(("phi3",), masks="one-windowed", mlp="fused"),
    "mixtral": Family(("mixtral", "qwen3_moe"), masks="one-windowed", mlp="moe"),
    "qwen2_moe": Family(("qwen2_moe",), masks="by-layer-type", mlp="moe"),
}

ARCHITECTURES = tuple(t for family in FAMILIES.values() for t in family.model_types)


def family_of(model_type: str | None) -> Family | None:
    return next((f for f in FAMILIES.values() if model_type in f.model_types), None)


def unsupported_reason(config) -> str | None:
    """Why the fast step is not exact for a model of this config (its architecture), or None."""
    model_type = getattr(config, "model_type", None)
    family = family_of(model_type)
    if family is None:
        return f"architecture {model_type!r} is not one of {', '.join(ARCHITECTURES)}"
    for name in LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if name != family.logit_softcap and value not in (None, 0, 1, 1.0):
            return f"the model's config sets {name}={value}, applied after the head"
    if getattr(config, "use_bidirectional_attention", False) or getattr(config, "is_causal", True) is False:
        return "the model's attention is bidirectional, not causal"
    if family.masks == "by-layer-type":
        other = sorted(set(getattr(config, "layer_types", None) or ()) - set(LAYER_TYPES))
        if other:
            return f"layer types {', '.join(other)} (only {' and '.join(LAYER_TYPES)} are masked here)"
    return None


def logit_softcap(config) -> float | None:
    """The cap of the soft-capping applied after the head, or None."""
    family = family_of(getattr(config, "model_type", None))
    value = getattr(config, family.logit_softcap, None) if family and family.logit_softcap else None
    return float(value) if value else None


def attention_windows(config) -> dict[str | None, int | None]:
    """The masks the decoder takes, as {layer type: sliding window or None for full attention};
    the one key None when one mask serves every layer."""
    family = family_of(getattr(config, "model_type", None))
    window = getattr(config, "sliding_window", None) or None
    if family is None or family.masks == "one":
        return {None: None}
    if family.masks == "one-windowed":
        return {None: window}
    return {kind: (window if kind == "sliding_attention" else None)
            for kind in dict.fromkeys(getattr(config, "layer_types", None) or ("full_attention",))}

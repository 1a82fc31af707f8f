"""A model's shape: its config numbers and exact parameter counts, and which of its linear layers
LoRA adapts. Facts every layer reads: training checks a recipe's LoRA targets with them before any
weight loads, the memory planner counts with them.

Parameter counts are never guessed from a formula: the model is built on the meta device (no
memory, no weights) and its modules are walked, which also gives the shapes of every nn.Linear for
counting LoRA parameters. (Where a config comes from, a folder, the hub or the planner's built-in
table of common models: planner/shapes.py.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError
from .model_rules import default_lora_targets


@dataclass(frozen=True)
class LinearGroup:
    """nn.Linear modules of one name (e.g. every layer's q_proj): LoRA targets them by this name."""

    name: str
    in_features: int
    out_features: int
    count: int
    in_layers: bool  # inside the decoder layers (False: lm_head and other top-level heads)
    names: tuple[str, ...] = field(default=(), repr=False, compare=False)  # full module names


@dataclass(frozen=True)
class ModelShape:
    """Everything the memory model needs to know about a model, with exact parameter counts."""

    name: str
    source: str  # "builtin", "local", "hub" or "hub-cache"
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    num_experts: int = 0  # MoE experts per layer (0 = dense)
    experts_per_token: int = 0
    total_params: int = 0
    embedding_params: int = 0  # input embeddings (and the tied output head)
    lm_head_params: int = 0  # 0 when tied to the input embeddings
    linear_weight_params: int = 0  # nn.Linear weights inside the decoder layers (what 4-bit quantises)
    largest_layer_params: int = 0  # DeepSpeed's "largest layer": most parameters held directly by one module
    largest_layer_is_linear: bool = False  # ...and whether that module is a quantisable nn.Linear
    linear_groups: tuple[LinearGroup, ...] = field(default=(), repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def other_params(self) -> int:
        """Parameters that stay 16-bit under QLoRA: embeddings, head, norms, biases, fused MoE experts."""
        return self.total_params - self.linear_weight_params

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def summary(self) -> str:
        moe = f", {self.num_experts} experts (top-{self.experts_per_token})" if self.num_experts else ""
        return (f"{self.name} [{self.model_type}, {self.source}]: {self.total_params / 1e9:.2f}B params, "
                f"{self.num_layers} layers, hidden {self.hidden_size}, heads {self.num_heads}/{self.num_kv_heads} kv, "
                f"intermediate {self.intermediate_size}, vocab {self.vocab_size}"
                f"{', tied embeddings' if self.tie_word_embeddings else ''}{moe}")


def shape_of_config(config, name: str, source: str = "local") -> ModelShape:
    """The shape of a loaded transformers config (training checks a recipe's LoRA targets with it)."""
    return _shape_from_config(json.dumps(config.to_dict(), sort_keys=True, default=str), name, source)


@functools.lru_cache(maxsize=64)
def _shape_from_config(config_json: str, name: str, source: str) -> ModelShape:
    from transformers import AutoConfig

    data = json.loads(config_json)
    model_type = data.get("model_type")
    if not model_type:
        raise UserError(f"the config of {name} has no model_type: is it a transformers model config?")
    try:
        config = AutoConfig.for_model(model_type, **{k: v for k, v in data.items() if k != "model_type"})
    except (ValueError, KeyError) as err:
        raise UserError(f"transformers does not know the model type {model_type!r} of {name}: {err}") from None
    text = getattr(config, "get_text_config", lambda: config)()
    counts = _count_on_meta(config, name)
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    experts = int(getattr(text, "num_local_experts", 0) or getattr(text, "num_experts", 0) or 0)
    return ModelShape(
        name=name,
        source=source,
        model_type=model_type,
        hidden_size=hidden,
        num_layers=int(text.num_hidden_layers),
        num_heads=heads,
        num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=head_dim,
        intermediate_size=int(getattr(text, "intermediate_size", 4 * hidden)),
        vocab_size=int(text.vocab_size),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        num_experts=experts,
        experts_per_token=int(getattr(text, "num_experts_per_tok", 0) or 0) if experts else 0,
        config=data,
        **counts,
    )


@contextlib.contextmanager
def _without_zero3_init():
    """Inside a ZeRO-3 run (a training rank checking its recipe's LoRA targets), transformers would
    build the model under deepspeed.zero.Init, which cannot partition meta tensors; counting needs
    no partitioning, so the run's DeepSpeed config is set aside for the count."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = ref() if ref is not None else None
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def _count_on_meta(config, name: str) -> dict[str, Any]:
    """Build the model on the meta device and count what the memory model needs."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        # torch's meta device, not accelerate.init_empty_weights: under the latter transformers 5
        # leaves tied embeddings untied (SmolLM2 would count 28M parameters twice).
        with torch.device("meta"), _without_zero3_init():
            model = AutoModelForCausalLM.from_config(config)
    except Exception as err:  # noqa: BLE001 - any architecture problem is the user's model, not ours
        raise UserError(f"cannot build {name} ({type(config).__name__}) as a causal LM to count its parameters: "
                        f"{err}") from None
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already skips tied duplicates; the id set is belt and braces
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    embedding_params = sum(p.numel() for p in embed.parameters())
    tied = head is not None and head.weight is embed.weight
    lm_head_params = 0 if (head is None or tied) else sum(p.numel() for p in head.parameters())
    groups: dict[tuple[str, int, int, bool], list[str]] = {}
    linear_weights = 0
    largest, largest_is_linear = 0, False
    for module_name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own > largest:
            largest, largest_is_linear = own, isinstance(module, torch.nn.Linear) and module is not head
        if isinstance(module, torch.nn.Linear):
            short = module_name.rsplit(".", 1)[-1]
            in_layers = module is not head
            key = (short, module.in_features, module.out_features, in_layers)
            groups.setdefault(key, []).append(module_name)
            if in_layers:
                linear_weights += module.weight.numel()
    return dict(
        total_params=total,
        embedding_params=embedding_params,
        lm_head_params=lm_head_params,
        linear_weight_params=linear_weights,
        largest_layer_params=largest,
        largest_layer_is_linear=largest_is_linear,
        linear_groups=tuple(LinearGroup(n, i, o, len(names), l, tuple(names)) for (n, i, o, l), names in groups.items()),
    )


def lora_target_groups(shape: ModelShape, targets) -> list[LinearGroup]:
    """The nn.Linear groups LoRA adapts for `targets` (PEFT's matching rules, as orpo_dist.model uses them).

    None -> the training code's default (orpo_dist.model_rules: the attention projections present);
    "all-linear" -> every nn.Linear but the output head; another string -> a regex matched against
    the full module name's last part; a list -> names.
    """
    layer_groups = [g for g in shape.linear_groups if g.in_layers]
    if targets is None or targets == [] or targets == ():
        default = default_lora_targets(g.name for g in layer_groups)
        return layer_groups if default == "all-linear" else [g for g in layer_groups if g.name in default]
    if isinstance(targets, str):
        if targets == "all-linear":
            return layer_groups
        if "," in targets or re.fullmatch(r"[A-Za-z0-9_]+", targets):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        else:  # PEFT: a string is a regex matched in full against each module's full name
            try:
                pattern = re.compile(targets)
            except re.error as err:
                raise UserError(f"LoRA target regex {targets!r} is invalid: {err}") from None
            hit = []
            for g in shape.linear_groups:
                names = tuple(n for n in g.names if pattern.fullmatch(n))
                if names:
                    hit.append(dataclasses.replace(g, count=len(names), names=names))
            if not hit:
                raise UserError(_no_target_message(shape, targets))
            return hit
    names = [str(t).strip() for t in targets]
    hit = [g for g in shape.linear_groups if g.name in names]
    missing = [n for n in names if not any(g.name == n for g in shape.linear_groups)]
    if missing:
        raise UserError(_no_target_message(shape, ", ".join(missing)))
    return hit


def _no_target_message(shape: ModelShape, what: str) -> str:
    import difflib

    names = sorted({g.name for g in shape.linear_groups})
    close = {w: difflib.get_close_matches(w, names, n=1, cutoff=0.6) for w in (t.strip() for t in what.split(","))}
    hints = "; ".join(f"{w!r}: did you mean {c[0]!r}?" for w, c in close.items() if c)
    return (f"LoRA target(s) {what} match no linear layer of {shape.name}" + (f" ({hints})" if hints else "")
            + f"; its linear layers are: {', '.join(names)} (or use all-linear)")


def lora_params(shape: ModelShape, targets, r: int) -> int:
    """Exact number of LoRA parameters: r x (in + out) per adapted nn.Linear."""
    return sum(g.count * r * (g.in_features + g.out_features) for g in lora_target_groups(shape, targets))

"""A model's shape for the memory planner: its config numbers and its exact parameter counts.

The config comes from a local config.json or model folder, from a built-in table of common models
(so planning works offline), or from the Hugging Face hub when online. Parameter counts are never
guessed from a formula: the model is built on the meta device (no memory, no weights) and its
modules are walked, which also gives the shapes of every nn.Linear for counting LoRA parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import builtin_models
from ..errors import UserError
from ..hub_access import hub_unreachable, offline
from ..model_rules import apply_config_overrides, default_lora_targets

# name -> (config class, config fields). Numbers copied from each model's config.json on the hub.
_LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0,
                  max_position_embeddings=8192)
_LLAMA3_70B = dict(_LLAMA3_8B, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                   num_attention_heads=64)
_MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False, max_position_embeddings=32768)
_QWEN25 = dict(vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0)
_SMOLLM2 = dict(vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0)

BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "meta-llama/Meta-Llama-3-8B": ("llama", _LLAMA3_8B),
    "meta-llama/Meta-Llama-3-70B": ("llama", _LLAMA3_70B),
    "meta-llama/Llama-3.1-8B": ("llama", dict(_LLAMA3_8B, max_position_embeddings=131072)),
    "meta-llama/Llama-3.1-70B": ("llama", dict(_LLAMA3_70B, max_position_embeddings=131072)),
    "mistralai/Mistral-7B-v0.1": ("mistral", _MISTRAL_7B),
    "mistralai/Mistral-7B-v0.3": ("mistral", dict(_MISTRAL_7B, vocab_size=32768)),
    "mistralai/Mixtral-8x7B-v0.1": ("mixtral", dict(_MISTRAL_7B, num_local_experts=8, num_experts_per_tok=2)),
    "Qwen/Qwen2.5-0.5B": ("qwen2", dict(_QWEN25, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                        num_attention_heads=14, num_key_value_heads=2)),
    "Qwen/Qwen2.5-1.5B": ("qwen2", dict(_QWEN25, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                        num_attention_heads=12, num_key_value_heads=2)),
    "Qwen/Qwen2.5-3B": ("qwen2", dict(_QWEN25, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                      num_attention_heads=16, num_key_value_heads=2)),
    "Qwen/Qwen2.5-7B": ("qwen2", dict(_QWEN25, vocab_size=152064, tie_word_embeddings=False, hidden_size=3584,
                                      intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                                      num_key_value_heads=4)),
    "Qwen/Qwen2.5-14B": ("qwen2", dict(_QWEN25, vocab_size=152064, tie_word_embeddings=False, hidden_size=5120,
                                       intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
                                       num_key_value_heads=8)),
    "Qwen/Qwen2.5-32B": ("qwen2", dict(_QWEN25, vocab_size=152064, tie_word_embeddings=False, hidden_size=5120,
                                       intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
                                       num_key_value_heads=8)),
    "Qwen/Qwen2.5-72B": ("qwen2", dict(_QWEN25, vocab_size=152064, tie_word_embeddings=False, hidden_size=8192,
                                       intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
                                       num_key_value_heads=8)),
    "HuggingFaceTB/SmolLM2-135M": ("llama", dict(_SMOLLM2, hidden_size=576, intermediate_size=1536,
                                                 num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)),
    "HuggingFaceTB/SmolLM2-360M": ("llama", dict(_SMOLLM2, hidden_size=960, intermediate_size=2560,
                                                 num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5)),
    "HuggingFaceTB/SmolLM2-1.7B": ("llama", dict(_SMOLLM2, hidden_size=2048, intermediate_size=8192,
                                                 num_hidden_layers=24, num_attention_heads=32,
                                                 num_key_value_heads=32, rope_theta=130000.0)),
}

# Extra spellings. Instruct/chat variants share their base model's shape, so "-Instruct" is
# dropped before looking a name up (see _key); these cover the names that differ otherwise.
ALIASES = {
    **{alias: "HuggingFaceTB/SmolLM2-135M" for alias in builtin_models.ALIASES},  # the offline demo model
    "meta-llama/Meta-Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
    "meta-llama/Meta-Llama-3.1-70B": "meta-llama/Llama-3.1-70B",
    "mistralai/Mistral-7B-v0.2": "mistralai/Mistral-7B-v0.1",
    "mistralai/Mistral-7B": "mistralai/Mistral-7B-v0.1",
    "mistralai/Mixtral-8x7B": "mistralai/Mixtral-8x7B-v0.1",
}

_CONFIG_CLASSES = {"llama": "LlamaConfig", "mistral": "MistralConfig", "mixtral": "MixtralConfig",
                   "qwen2": "Qwen2Config"}


def _key(name: str) -> str:
    """Case-insensitive, organisation optional, -Instruct/-Chat/-hf dropped."""
    base = name.strip().rstrip("/").lower().rsplit("/", 1)[-1]
    base = re.sub(r"-(instruct|chat|hf|it)(?=$|-)", "", base)
    return base


_INDEX: dict[str, str] = {}
for _name in BUILTIN:
    _INDEX[_key(_name)] = _name
for _alias, _target in ALIASES.items():
    _INDEX[_key(_alias)] = _target


def find_builtin(name: str) -> str | None:
    """The built-in table's name for `name`, or None."""
    return _INDEX.get(_key(name))


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


def _known_models_hint() -> str:
    return ("  Built-in models (work offline): " + ", ".join(BUILTIN) +
            " (also their -Instruct variants, and the alias smollm2-135m-instruct).\n"
            "  Or pass a local model folder or config.json: --model /path/to/model")


def load_config(name_or_path: str):
    """(transformers config, source, display name) for a local path, a built-in name or a hub name."""
    from transformers import AutoConfig

    if not name_or_path or not str(name_or_path).strip():
        raise UserError("no model given: pass --model NAME_OR_PATH (a hub name, a local folder or config.json)\n"
                        + _known_models_hint())
    name = str(name_or_path).strip()
    path = Path(name).expanduser()
    if path.exists():
        target = path / "config.json" if path.is_dir() else path
        if not target.is_file():
            raise UserError(f"{path} has no config.json: point --model at a model folder or at its config.json")
        try:
            return AutoConfig.from_pretrained(str(path)), "local", name
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read the model config in {target}: {err}") from None
    builtin = find_builtin(name)
    if builtin is not None:
        kind, fields = BUILTIN[builtin]
        import transformers

        cls = getattr(transformers, _CONFIG_CLASSES[kind])
        return cls(**fields), "builtin", builtin
    if name.startswith((".", "/", "~")) or name.endswith(".json"):
        raise UserError(f"{name} does not exist: give an existing model folder or config.json")
    # A hub name we don't know: the local HF cache first, then the hub if we may go online.
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True), "hub-cache", name
    except Exception:  # noqa: BLE001 - not cached (or not a valid repo id): try online next
        pass
    if offline():
        raise UserError(f"unknown model {name!r}: it is not built in, not in the local Hugging Face cache, and the "
                        f"hub is off (HF_HUB_OFFLINE is set).\n" + _known_models_hint())
    unreachable = hub_unreachable()
    if unreachable:
        raise UserError(f"unknown model {name!r}: it is not built in, not in the local Hugging Face cache, and the "
                        f"hub cannot be reached ({unreachable}).\n" + _known_models_hint())
    try:
        return AutoConfig.from_pretrained(name), "hub", name
    except Exception as err:  # noqa: BLE001 - network errors, gated repos, bad ids all land here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot get the config of {name!r} from the Hugging Face hub ({first}).\n"
                        + _known_models_hint()) from None


def resolve_shape(name_or_path: str, overrides: dict[str, Any] | None = None) -> ModelShape:
    """The shape of a model given by hub name, built-in name/alias, local folder or config.json, with
    a recipe's model_config_overrides applied by the training code's own rule (orpo_dist.model_rules)."""
    config, source, name = load_config(name_or_path)
    config = apply_config_overrides(config, overrides)
    if overrides:
        name = f"{name} + overrides {json.dumps(overrides, sort_keys=True)}"
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return _shape_from_config(key, name, source)


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

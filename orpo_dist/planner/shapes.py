"""Where the planner finds a model's config: a local config.json or model folder, a built-in table
of common models (so planning works offline), or the Hugging Face hub when online. The shape and
exact parameter counts made from it: orpo_dist/model_shape.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import builtin_models
from ..errors import UserError
from ..hub_access import hub_unreachable, offline
from ..model_rules import apply_config_overrides
from ..model_shape import ModelShape, shape_of_config

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
    return shape_of_config(config, name, source)

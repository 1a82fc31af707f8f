"""Tokenizer, model and LoRA config from a recipe: full fine-tuning, LoRA or QLoRA.

Precision follows the training args (fp32 on CPU, bf16 on GPUs) unless the recipe sets `dtype`.
The rules the memory planner must share (config overrides, LoRA's default targets, which method a
recipe asks for) live in orpo_dist/model_rules.py.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path

import torch

from . import builtin_models
from .errors import UserError
from .hub_access import cached_snapshot, check_hub_answers, hub_model_name, looks_local
from .model_rules import apply_config_overrides, default_lora_targets, training_method
from .recipe import ModelArguments, OrpoDistConfig
from .strategies import FSDP2, running_engine


def model_dtype(margs: ModelArguments, training: OrpoDistConfig) -> torch.dtype | str:
    if margs.dtype == "auto":
        return "auto"
    if margs.dtype:
        return getattr(torch, margs.dtype)
    if training.bf16:
        return torch.bfloat16
    if training.fp16:
        return torch.float16
    return torch.float32


def model_path(margs: ModelArguments) -> str:
    if not margs.model_name_or_path:
        raise UserError(builtin_models.NO_MODEL)
    return builtin_models.resolve(margs.model_name_or_path)


def check_model_folder(name: str, trust_remote_code: bool = False, what: str = "model",
                       revision: str | None = None) -> None:
    """A local model folder must hold a config.json with a model_type (else transformers fails
    with an error that does not say which folder, or what is missing), and its own Python code
    (auto_map) runs only when the recipe says trust_remote_code."""
    folder = Path(name).expanduser()
    if not folder.exists() and looks_local(name):
        raise UserError(f"{what} {name} does not exist (relative paths start at {Path.cwd()}): give a model folder, "
                        f"a hub name or {builtin_models.DEMO_MODEL}")
    if not folder.is_dir():
        check_hub_answers(name, what)
        repo = hub_model_name(name)
        snapshot = cached_snapshot(repo, revision) if repo else None
        if snapshot is not None:  # the hub's copy on this disk: its pickles are read as a folder's are
            from .pickle_scan import MODEL_FIX, check_pickles

            check_pickles(snapshot, MODEL_FIX)
        return  # a hub name or a file: transformers' own errors name it
    config = folder / "config.json"
    if not config.is_file():
        if any(folder.glob("*.gguf")):
            return  # a GGUF folder (gguf_file names the file)
        raise UserError(f"model folder {folder} has no config.json: is it the folder save_pretrained wrote? "
                        "(for a GGUF file pass gguf_file too)")
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{config} is not valid JSON ({err}): the model folder is damaged") from None
    if not isinstance(data, dict) or not data.get("model_type"):
        raise UserError(f"{config} has no model_type: transformers cannot tell which architecture it is "
                        "(add e.g. \"model_type\": \"llama\", or re-save the model with save_pretrained)")
    from .pickle_scan import MODEL_FIX, check_pickles

    check_pickles(folder, MODEL_FIX)
    if data.get("auto_map") and not trust_remote_code:
        code = sorted({str(v).split(".")[0] + ".py" for v in data["auto_map"].values() if isinstance(v, str)})
        raise UserError(f"model folder {folder} brings its own Python code ({', '.join(code)}, named in auto_map "
                        "of its config.json), which would run on load. Read it, then set trust_remote_code: true "
                        "in the recipe if you trust it; orpo-dist never runs it otherwise")


def check_gguf(folder: str, gguf_file: str | None) -> None:
    """gguf_file names a file in a local model folder: it must be there, GGUF and complete."""
    if gguf_file and Path(folder).expanduser().is_dir():
        from .gguf_file import check_gguf_file

        check_gguf_file(Path(folder).expanduser() / gguf_file, "gguf_file")


def load_tokenizer(margs: ModelArguments, training: OrpoDistConfig):
    from transformers import AutoTokenizer

    name = builtin_models.resolve(margs.tokenizer_name_or_path) or model_path(margs)
    kwargs = {"revision": margs.model_revision, "trust_remote_code": training.trust_remote_code}
    if margs.gguf_file and not margs.tokenizer_name_or_path:
        kwargs["gguf_file"] = margs.gguf_file
    check_model_folder(name, training.trust_remote_code, "tokenizer" if margs.tokenizer_name_or_path else "model",
                       margs.model_revision)
    check_gguf(name, margs.gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the tokenizer {name!r}: {str(err)[:500]}") from None
    if tokenizer.pad_token is None:
        # Llama-3 and friends have no pad token. Padding is masked out of ORPO's loss by the
        # attention mask, so reusing an existing token is safe and keeps the vocabulary unchanged.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if margs.chat_template:
        # The recipe's template renders the data and, saved with the tokenizer, the trained model's chats.
        tokenizer.chat_template = margs.chat_template
        try:
            tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                          add_generation_prompt=True)
        except Exception as err:  # jinja syntax errors, raise_exception() of strict templates
            raise UserError(f"the recipe's chat_template does not render a one-turn chat: "
                            f"{type(err).__name__}: {str(err)[:200]}") from None
    return tokenizer


def quantization_config(margs: ModelArguments, dtype):
    """TRL's get_quantization_config, given the dtypes this run computes and stores 4-bit weights in."""
    if not (margs.load_in_4bit or margs.load_in_8bit):
        return None
    from trl import get_quantization_config

    compute = dtype if isinstance(dtype, torch.dtype) else torch.bfloat16
    # Storage dtype = compute dtype: ZeRO-3 (and FSDP) can only shard the packed 4-bit weights
    # when they are stored in the same float dtype as the rest of the model; harmless otherwise.
    storage = getattr(torch, margs.bnb_4bit_quant_storage) if margs.bnb_4bit_quant_storage else compute
    if margs.load_in_4bit and not storage.is_floating_point and running_engine() == FSDP2:
        # accelerate#3983: FSDP cannot shard integer-stored 4-bit weights; runs on them have
        # trained to loss 0 / grad_norm nan without an error.
        raise UserError(f"bnb_4bit_quant_storage {margs.bnb_4bit_quant_storage} cannot be sharded by FSDP2: remove "
                        f"the field (the storage dtype then follows the compute dtype, {str(compute)[6:]}) or set "
                        "it to that float dtype")
    settings = copy.copy(margs)  # a copy, not dataclasses.replace: the recipe's checks ran once already
    settings.dtype, settings.bnb_4bit_quant_storage = compute, storage
    return get_quantization_config(settings)


def load_model(margs: ModelArguments, training: OrpoDistConfig):
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed

    path = model_path(margs)
    check_model_folder(path, training.trust_remote_code, revision=margs.model_revision)
    dtype = model_dtype(margs, training)
    common = {"revision": margs.model_revision, "trust_remote_code": training.trust_remote_code}
    if margs.gguf_file:
        common["gguf_file"] = margs.gguf_file
    overrides = margs.model_config_overrides or None
    if margs.random_init:
        config = apply_config_overrides(AutoConfig.from_pretrained(path, **common), overrides)
        set_seed(training.seed)  # the same random model on every rank and on reload for evaluation
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype if dtype != "auto" else None, trust_remote_code=training.trust_remote_code
        )
        return model
    kwargs = dict(common, dtype=dtype)
    if overrides:
        kwargs["config"] = apply_config_overrides(AutoConfig.from_pretrained(path, **common), overrides)
    if margs.attn_implementation:
        kwargs["attn_implementation"] = margs.attn_implementation
    quant = quantization_config(margs, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        from transformers.integrations import is_deepspeed_zero3_enabled

        if not is_deepspeed_zero3_enabled():  # ZeRO-3 places (and shards) the weights itself
            # Each rank loads its quantised copy onto its own device (never device_map="auto" under DDP).
            kwargs["device_map"] = {"": _local_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except pickle.UnpicklingError as err:  # a weights pickle fetched just now, refused by torch's weights_only
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else "refused"
        raise UserError(f"cannot load the model {path!r}: torch refused a weights file that is a pickle ({first}). "
                        "Use the model's safetensors files (save_pretrained's default), from a source you trust") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the model {path!r}: {str(err)[:500]}") from None
    except RuntimeError as err:
        if overrides and "mismatched" in str(err):
            raise UserError(
                f"model_config_overrides {overrides} change the shapes of {path}'s weights: use them with "
                "random_init: true, or override only fields that keep the shapes (e.g. rope_scaling)"
            ) from None
        raise


def _local_device():
    if torch.cuda.is_available():
        return int(os.environ.get("LOCAL_RANK", "0"))
    return "cpu"


def check_lora_targets(margs: ModelArguments, training: OrpoDistConfig) -> None:
    """LoRA targets that name no layer of the model are refused from its config alone, before
    any weight loads (PEFT raises only after the load), naming the layers the model does have."""
    if training_method(margs.use_peft, margs.load_in_4bit, margs.load_in_8bit) == "full" \
            or not margs.lora_target_modules:
        return
    from transformers import AutoConfig

    from .model_shape import lora_target_groups, shape_of_config

    path = model_path(margs)
    check_model_folder(path, training.trust_remote_code, revision=margs.model_revision)
    kwargs = {"gguf_file": margs.gguf_file} if margs.gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(path, revision=margs.model_revision,
                                            trust_remote_code=training.trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the config of the model {path!r}: {str(err)[:500]}") from None
    config = apply_config_overrides(config, margs.model_config_overrides or None)
    try:
        lora_target_groups(shape_of_config(config, margs.model_name_or_path), margs.lora_target_modules)
    except UserError as err:
        raise UserError(f"lora_target_modules: {err}") from None


def lora_targets(model, margs: ModelArguments):
    if margs.lora_target_modules:
        return margs.lora_target_modules
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return default_lora_targets(names)


def peft_config(model, margs: ModelArguments):
    """TRL's get_peft_config for LoRA/QLoRA recipes (use_peft, or a quantised model), with the
    default targets of model_rules when the recipe names none; None for full fine-tuning."""
    if training_method(margs.use_peft, margs.load_in_4bit, margs.load_in_8bit) == "full":
        return None
    from trl import get_peft_config

    settings = copy.copy(margs)
    settings.use_peft, settings.lora_target_modules = True, lora_targets(model, margs)
    return get_peft_config(settings)

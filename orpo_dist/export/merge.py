"""One plain model from a run: LoRA merged into its base, or the full fine-tune as saved.

QLoRA adapters were trained against a 4-bit (or 8-bit) base; they are merged into the
UNquantised base reloaded in the run's float dtype (bf16/fp16 on GPUs, fp32 on a CPU), so the
result carries no quantisation error of its own and loads anywhere without bitsandbytes.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..atomic import new_folder
from .source import RunSource


def unquantised(margs):
    """The recipe's model arguments without load_in_4bit / load_in_8bit."""
    plain = copy.copy(margs)
    plain.load_in_4bit = plain.load_in_8bit = False
    return plain


def load_merged(source: RunSource):
    """The run's model with any adapter merged in: a plain transformers model, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..model import load_model, model_dtype

    recipe = source.recipe
    if source.is_adapter:
        from peft import PeftModel

        base = load_model(unquantised(recipe.model), recipe.training)
        model = PeftModel.from_pretrained(base, source.run_dir).merge_and_unload()
    else:
        dtype = model_dtype(recipe.model, recipe.training)
        model = AutoModelForCausalLM.from_pretrained(source.run_dir, dtype=dtype)
    model = plain_model(model)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval()


def plain_model(model):
    """A model loaded from a GGUF base holds a GGUF quantiser that refuses save_pretrained:
    rebuild the same architecture from its config and weights (already dequantised)."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config).to(next(model.parameters()).dtype)
    result = plain.load_state_dict(model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise RuntimeError(f"rebuilding the GGUF-loaded model lost weights: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain


def write_merged(model, tokenizer, folder: Path) -> Path:
    """An HF folder: safetensors weights, config, generation config, tokenizer and chat template."""
    with new_folder(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder

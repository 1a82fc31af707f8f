"""The planner describes the model the training code builds: one rule for config overrides, LoRA's
default targets and the full/LoRA/QLoRA choice (orpo_dist/model_rules.py), used by both."""

from __future__ import annotations

import json

import pytest

from orpo_dist.errors import UserError
from orpo_dist.model import load_model, peft_config
from orpo_dist.planner.inputs import method_of
from orpo_dist.model_shape import lora_params, lora_target_groups
from orpo_dist.planner.shapes import resolve_shape
from orpo_dist.recipe import parse

from .helpers import TINY_LLAMA_SHAPE, TINY_RECIPE

OVERRIDES = {
    # the tiny recipe's: hidden_size and heads change, head_dim follows them (64 / 4 = 16)
    "hidden and heads": TINY_LLAMA_SHAPE,
    # only the heads change: head_dim follows them (576 / 8 = 72, SmolLM2's own is 64)
    "heads only": {"num_hidden_layers": 1, "num_attention_heads": 8, "num_key_value_heads": 2,
                   "intermediate_size": 64},
    # an explicit head_dim is kept: attention narrower than the hidden size (4 x 16 = 64 < 128)
    "explicit head_dim": {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                          "num_hidden_layers": 2, "intermediate_size": 64},
}


def built(tmp_path, overrides: dict, *extra: str):
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path),
                    "--model_config_overrides", json.dumps(overrides), *extra])
    return recipe, load_model(recipe.model, recipe.training)


@pytest.mark.parametrize("overrides", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_planner_counts_the_parameters_of_the_model_training_builds(tmp_path, overrides):
    recipe, model = built(tmp_path, overrides)
    shape = resolve_shape(recipe.model.model_name_or_path, overrides)
    assert sum(p.numel() for p in model.parameters()) == shape.total_params
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == \
        (shape.hidden_size, shape.num_heads, shape.head_dim)
    assert config.head_dim == overrides.get("head_dim", config.hidden_size // config.num_attention_heads)


def test_lora_defaults_are_the_same_modules_and_parameters(tmp_path):
    from peft import get_peft_model

    overrides = OVERRIDES["hidden and heads"]
    recipe, model = built(tmp_path, overrides, "--use_peft", "true", "--lora_r", "8")
    lora = peft_config(model, recipe.model)
    shape = resolve_shape(recipe.model.model_name_or_path, overrides)
    assert sorted(lora.target_modules) == sorted({g.name for g in lora_target_groups(shape, None)})
    peft_model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == lora_params(shape, None, 8)


def test_overrides_apply_to_a_pretrained_model_too(tmp_path, tiny_model_dir):
    recipe, model = built(tmp_path, {"rms_norm_eps": 1e-3}, "--random_init", "false",
                          "--model_name_or_path", str(tiny_model_dir))
    assert model.config.rms_norm_eps == 1e-3
    assert sum(p.numel() for p in model.parameters()) == \
        resolve_shape(str(tiny_model_dir), {"rms_norm_eps": 1e-3}).total_params
    with pytest.raises(UserError, match="change the shapes.*random_init"):
        built(tmp_path, {"intermediate_size": 256}, "--random_init", "false", "--model_name_or_path", str(tiny_model_dir))


def test_both_sides_refuse_the_same_bad_input(tmp_path):
    with pytest.raises(UserError, match="has no field 'bogus'") as planner_error:
        resolve_shape("smollm2-135m-instruct", {"bogus": 1})
    with pytest.raises(UserError, match="has no field 'bogus'") as model_error:
        built(tmp_path, {"bogus": 1})
    assert str(planner_error.value) == str(model_error.value)
    with pytest.raises(UserError, match="not a multiple of num_attention_heads"):
        resolve_shape("smollm2-135m-instruct", {"num_attention_heads": 7})
    quantised_full = {"use_peft": False, "load_in_4bit": True}
    with pytest.raises(UserError, match="only be trained with LoRA") as planner_error:
        method_of(quantised_full)
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path), "--load_in_4bit", "true"])
    with pytest.raises(UserError, match="only be trained with LoRA") as model_error:
        peft_config(None, recipe.model)
    assert str(planner_error.value) == str(model_error.value)

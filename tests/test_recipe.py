"""Recipes parse through TRL's own parser: YAML, CLI overrides, clear errors."""

from __future__ import annotations

import pytest
import yaml

from orpo_dist.demo import DEMO_RECIPE
from orpo_dist.errors import UserError
from orpo_dist.recipe import check_keys, load_yaml, parse, resolved_dict

from .helpers import REPO, TINY_RECIPE, check_refusal, run_case

RECIPES = sorted((REPO / "orpo_dist" / "recipes").glob("*.yaml"))


def test_yaml_and_cli_override(tmp_path):
    recipe = parse(["--config", str(TINY_RECIPE), "--learning_rate", "5e-6", "--output_dir", str(tmp_path)])
    assert recipe.training.learning_rate == 5e-6  # CLI beats YAML
    assert recipe.training.beta == 0.5  # from YAML
    assert recipe.model.random_init and recipe.model.model_config_overrides["num_hidden_layers"] == 2
    assert recipe.data.dataset_test_split == "heldout"


def test_cpu_defaults_to_fp32_and_real_ddp(tmp_path):
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path)])
    # ORPOConfig alone would set bf16=True and raise on a CPU; without use_cpu DDP ranks never sync.
    assert recipe.training.bf16 is False
    assert recipe.training.use_cpu is True


def test_bf16_on_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="bf16"):
        parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path), "--bf16", "true"])


def test_unknown_field_names_a_close_match(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nlearning_rat: 1e-5\n")
    with pytest.raises(UserError, match="learning_rat.*did you mean 'learning_rate'"):
        parse(["--config", str(bad)])


def test_trl_example_recipe_runs_unchanged(tmp_path):
    # Only fields of TRL's ScriptArguments, ORPOConfig and ModelConfig, as TRL's ORPO example takes.
    trl_recipe = tmp_path / "trl_orpo.yaml"
    trl_recipe.write_text(yaml.safe_dump({
        "model_name_or_path": "Qwen/Qwen2-0.5B-Instruct", "dataset_name": "trl-lib/ultrafeedback_binarized",
        "learning_rate": 8e-6, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8,
        "max_length": 1024, "beta": 0.1, "use_peft": True, "lora_r": 32, "lora_alpha": 16,
        "lora_target_modules": ["q_proj", "v_proj"], "output_dir": str(tmp_path / "out"),
        "logging_steps": 25, "eval_strategy": "steps", "eval_steps": 500, "bf16": False,
    }))
    recipe = parse(["--config", str(trl_recipe)])
    assert recipe.model.lora_r == 32 and recipe.data.dataset_name == "trl-lib/ultrafeedback_binarized"


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_parse(path, tmp_path):
    check_keys(load_yaml(path), str(path))
    # GPU recipes say bf16: true; on this CPU we check everything else parses.
    recipe = parse(["--config", str(path), "--bf16", "false", "--output_dir", str(tmp_path)])
    assert recipe.model.model_name_or_path


def test_demo_recipe_file_matches_embedded_default():
    shipped = load_yaml(REPO / "orpo_dist" / "recipes" / "smollm2-demo.yaml")
    shipped.pop("output_dir")
    assert shipped == DEMO_RECIPE


def test_llama3_qlora_recipe_is_the_tutorial_run(tmp_path):
    r = parse(["--config", str(REPO / "orpo_dist/recipes/llama3-8b-qlora.yaml"), "--bf16", "false",
               "--output_dir", str(tmp_path)])
    m, t = r.model, r.training
    assert (m.load_in_4bit, m.bnb_4bit_quant_type, m.use_bnb_nested_quant, m.dtype) == (True, "nf4", True, "bfloat16")
    assert (m.lora_r, m.lora_alpha, m.lora_dropout) == (16, 32, 0.05)
    assert sorted(m.lora_target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert (t.beta, t.learning_rate, t.num_train_epochs, t.max_length) == (0.1, 8e-6, 3, 1024)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.optim) == (2, 4, "paged_adamw_8bit")
    assert (str(t.lr_scheduler_type.value), t.warmup_steps, t.eval_steps) == ("cosine", 0.1, 50)


def test_resolved_recipe_round_trips(tmp_path):
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path), "--beta", "0.25"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(resolved_dict(recipe)))
    again = parse(["--config", str(path)])
    assert again.training.beta == 0.25 and again.model.model_config_overrides == recipe.model.model_config_overrides
    assert resolved_dict(again) == resolved_dict(recipe)


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    status, _, err = run_case(["train", "--config", tmp_path / "nope.yaml"], capsys)
    check_refusal(status, err, ["does not exist"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_name_or_path: [unclosed\n")
    status, _, err = run_case(["train", "--config", broken], capsys)
    check_refusal(status, err, ["not valid YAML"])

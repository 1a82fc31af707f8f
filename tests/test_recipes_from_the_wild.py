"""Published ORPO recipes written for other tools (tests/fixtures/, each with its source and licence):
renamed fields are read under today's names, max_prompt_length and chat_template work, anything
else unknown is refused with a hint; one of them trains the tiny model."""

from __future__ import annotations

import json
import shlex

import pytest

from orpo_dist.errors import UserError
from orpo_dist.recipe import check_without_hardware, parse, resolved_dict
from orpo_dist.run_folder import HELDOUT_FILE, training_logs

from .helpers import REPO, write_jsonl

FIXTURES = REPO / "tests" / "fixtures"
ZEPHYR = FIXTURES / "alignment-handbook-zephyr-141b-orpo.yaml"
LABONNE = FIXTURES / "labonne-llama3-orpo.yaml"
MISTRAL = FIXTURES / "alignment-handbook-mistral-7b-orpo.yaml"
TRL_EXAMPLE = FIXTURES / "trl-0.8-orpo-example.args"
# The recipes say bf16: true, for GPUs, and log to wandb, which this machine does not have (a
# missing logger is refused at parse time: tests/test_report.py).
CPU = ["--bf16", "false", "--report_to", "none"]


def test_alignment_handbook_orpo_recipe_parses(tmp_path, capsys):
    recipe = parse(["--config", str(ZEPHYR), *CPU, "--output_dir", str(tmp_path)])
    m, t, d = recipe.model, recipe.training, recipe.data
    assert (m.dtype, m.attn_implementation, t.max_length, t.max_prompt_length) == \
        ("bfloat16", "flash_attention_2", 2048, 1792)
    assert m.chat_template.startswith("{% for message in messages %}") and "<|assistant|>" in m.chat_template
    assert (t.beta, str(t.lr_scheduler_type.value), t.dataset_num_proc, d.dataset_name) == \
        (0.05, "inverse_sqrt", 8, "orpo-dist-demo")
    notices = capsys.readouterr().err
    assert "torch_dtype is now called dtype" in notices and len(notices.strip().splitlines()) == 1
    # the run folder's recipe.yaml holds the new names and reruns as it is
    resolved = resolved_dict(recipe)
    assert "torch_dtype" not in resolved and resolved["dtype"] == "bfloat16" and resolved["max_prompt_length"] == 1792


def test_the_llama3_orpo_tutorial_settings_parse(tmp_path, capsys):
    recipe = parse(["--config", str(LABONNE), *CPU, "--output_dir", str(tmp_path)])
    m, t = recipe.model, recipe.training
    assert (m.dtype, m.load_in_4bit, m.use_bnb_nested_quant, m.lora_r, m.lora_alpha) == ("bfloat16", True, True, 16, 32)
    assert (t.max_length, t.max_prompt_length, str(t.eval_strategy.value), t.eval_steps, t.optim.value) == \
        (1024, 512, "steps", 0.2, "paged_adamw_8bit")
    notices = capsys.readouterr().err
    assert "torch_dtype is now called dtype" in notices and "evaluation_strategy is now called eval_strategy" in notices


def test_fields_without_a_counterpart_are_still_refused_and_only_they(tmp_path, capsys):
    with pytest.raises(UserError) as refused:
        parse(["--config", str(MISTRAL), *CPU, "--output_dir", str(tmp_path)])
    message = str(refused.value)
    assert "unknown recipe field(s) 'dataset_mixer' (alignment-handbook's dataset mixing" in message
    assert "'dataset_splits' (use dataset_train_split / dataset_test_split)" in message
    for renamed in ("torch_dtype", "evaluation_strategy", "warmup_ratio", "use_flash_attention_2",
                    "preprocessing_num_workers"):
        assert renamed not in message  # read under their new names
    notices = capsys.readouterr().err
    assert "warmup_ratio ignored: warmup_steps is set" in notices  # both given: warmup_steps wins, as before
    assert "use_flash_attention_2 is now attn_implementation: flash_attention_2" in notices
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nmax_prompt_lenght: 10\n")
    with pytest.raises(UserError, match="max_prompt_lenght.*did you mean 'max_prompt_length'"):
        parse(["--config", str(bad)])


def test_trl_0x_example_command_and_renamed_flags(tmp_path):
    args = [a for line in TRL_EXAMPLE.read_text().splitlines() if not line.startswith("#") for a in shlex.split(line)]
    with pytest.raises(UserError, match="report_to: wandb requested but not installed here"):
        check_without_hardware("tiny", args)  # refused on the login node, before anything is launched
    args += ["--report_to", "none"]
    values = check_without_hardware("tiny", args)  # a login node building the launch command
    assert (values["bf16"], values["use_peft"], values["lora_r"], values["optim"], values["remove_unused_columns"]) == \
        (True, True, 16, "rmsprop", False)
    with pytest.raises(UserError, match="bf16 is set but there is no GPU"):  # this CPU refuses bf16 clearly
        parse(["--config", "tiny", *args])
    recipe = parse(["--config", "tiny", "--output_dir", str(tmp_path), "--torch_dtype", "float32",
                    "--evaluation-strategy=steps", "--warmup_ratio", "0.1"])
    assert (recipe.model.dtype, str(recipe.training.eval_strategy.value), recipe.training.warmup_steps) == \
        ("float32", "steps", 0.1)
    with pytest.raises(UserError, match="max_prompt_length 128 leaves no room"):
        parse(["--config", "tiny", "--output_dir", str(tmp_path), "--max_prompt_length", "128"])


def test_a_handbook_recipe_with_torch_dtype_max_prompt_length_and_chat_template_trains(tmp_path, capsys):
    """The handbook's recipe as published (model and data swapped for the tiny ones), with long
    prompts in the data: they are cut to their last tokens and train; the template is the run's."""
    from transformers import AutoTokenizer

    from orpo_dist.train import run

    rows = [{"prompt": f"Question {i}: is {i} even?", "chosen": "Yes." if i % 2 == 0 else "No.",
             "rejected": "No." if i % 2 == 0 else "Yes."} for i in range(8)]
    rows += [{"prompt": "Some context to read first. " * 30 + f"Question {i}: is {i} odd?",
              "chosen": "Yes." if i % 2 else "No.", "rejected": "No." if i % 2 else "Yes."} for i in range(4)]
    data = tmp_path / "pairs.jsonl"
    write_jsonl(data, rows)
    out = tmp_path / "run"
    recipe = parse(["--config", str(ZEPHYR), "--output_dir", str(out), "--dataset_name", str(data),
                    # this machine: a CPU, offline, no flash-attn/tensorboard/wandb; tiny and quick
                    *CPU, "--attn_implementation", "sdpa", "--report_to", "none", "--push_to_hub", "false",
                    "--dataset_num_proc", "1", "--optim", "adamw_torch", "--max_steps", "4", "--logging_steps", "1",
                    "--per_device_train_batch_size", "2", "--eval_split_size", "0.2",
                    "--max_length", "96", "--max_prompt_length", "48"])
    result = run(recipe)
    assert result.global_step == 4
    printed = capsys.readouterr().out
    assert "4 prompts are cut to their last 48 tokens" in printed and "dropped" not in printed
    assert "data: 9 training pairs, 3 eval pairs" in printed  # all 12 rows kept
    logs = training_logs(out)
    assert len(logs) == 4 and all(r["loss"] == r["loss"] for r in logs)  # trained, nothing NaN
    saved = AutoTokenizer.from_pretrained(out)
    assert saved.chat_template == recipe.model.chat_template  # saved with the model
    heldout = [json.loads(line) for line in (out / HELDOUT_FILE).read_text().splitlines()]
    assert all(r["prompt"].startswith("<|user|>") for r in heldout)  # the data was rendered with it
    import torch
    from transformers import AutoModelForCausalLM

    assert next(AutoModelForCausalLM.from_pretrained(out).parameters()).dtype == torch.bfloat16  # torch_dtype


def test_data_check_reports_the_cut_prompts(tmp_path, capsys, demo_model_dir):
    from orpo_dist.data.cli import main

    rows = [{"prompt": "Some context to read first. " * 30 + "Is it?", "chosen": "Yes.", "rejected": "No."},
            {"prompt": "Short?", "chosen": "Yes.", "rejected": "No."}]
    data = tmp_path / "pairs.jsonl"
    write_jsonl(data, rows)
    assert main(["check", str(data), "--max-length", "64", "--max-prompt-length", "32"]) == 0
    out = capsys.readouterr().out
    assert "1 prompt is cut to their last 32 tokens (max_prompt_length)" in out and "0 bad" in out
    assert main(["check", str(data), "--max-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "1 bad (1 prompt too long)" in out and "set max_prompt_length to keep its last tokens" in out

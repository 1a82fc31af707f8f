"""Recipe values that cannot train are refused before anything loads: one table of cases, each run
as a user runs it (`orpo-dist train`), each checked for exit status 2, no traceback, the words of
the message, and an output folder with no model in it."""

from __future__ import annotations

import pytest

from .helpers import TINY_RECIPE, run_cli

# (case id, extra CLI args or a recipe's YAML lines, words the message must hold)
CASES = [
    ("negative learning rate", ["--learning_rate=-1e-5"], "learning_rate is -1e-05: it must be a positive number"),
    ("zero learning rate", ["--learning_rate", "0"], "learning_rate is 0.0"),
    ("batch size 0", ["--per_device_train_batch_size", "0"], "per_device_train_batch_size is 0"),
    ("batch size 2.5 on the CLI", ["--per_device_train_batch_size", "2.5"], "invalid int value: '2.5'"),
    ("batch size 2.5 in YAML", "per_device_train_batch_size: 2.5", "per_device_train_batch_size is 2.5"),
    ("accumulation 0", ["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps is 0"),
    ("negative beta", ["--beta=-0.1"], "beta is -0.1: it must be in (0, 10]"),
    ("huge beta", ["--beta", "50"], "beta is 50.0"),
    ("max_length 0", ["--max_length", "0"], "max_length is 0"),
    ("max_prompt_length 0", ["--max_prompt_length", "0"], "max_prompt_length is 0"),
    ("chunk size 0", ["--orpo_chunk_size", "0"], "orpo_chunk_size is 0"),
    ("negative warmup", ["--warmup_steps=-3"], "warmup_steps is -3"),
    ("nothing to train", ["--num_train_epochs", "0", "--max_steps=-1"], "num_train_epochs is 0.0 and max_steps is unset"),
    ("max_train_samples 0", ["--max_train_samples", "0"], "max_train_samples is 0"),
    ("dataset_columns as a list", "dataset_columns: [question, good, bad]", "dataset_columns is a list"),
    ("logger not installed", ["--report_to", "swanlab"], "swanlab requested but not installed"),
    ("unknown logger", ["--report_to", "tensorbored"], "'tensorbored' is not a logger the Trainer knows"),
    ("optimiser that does not exist", ["--optim", "adamw_nonsense"], "adamw_nonsense"),
    ("QLoRA without LoRA", ["--load_in_4bit", "true", "--use_peft", "false"], "can only be trained with LoRA"),
    ("unknown field", ["--lerning_rate", "1e-5"], "learning_rate"),
]


@pytest.mark.parametrize("case, extra, words", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_refused_before_anything_loads(tmp_path, capsys, case, extra, words):
    """`orpo-dist train` in this process (the CLI's own entry point and error handling; a
    subprocess per case would spend most of its time importing TRL)."""
    from orpo_dist.cli import main

    out = tmp_path / "run"
    args = ["train", "--config", str(TINY_RECIPE), "--output_dir", str(out)]
    if isinstance(extra, str):  # a value only a YAML file can hold (a float batch, a list)
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(TINY_RECIPE.read_text() + "\n" + extra + "\n")
        args = ["train", "--config", str(recipe), "--output_dir", str(out)]
    else:
        args += extra
    try:
        status = main(args)
    except SystemExit as exit:  # argparse's own refusals (a value of the wrong type)
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2, (case, status, err[-2000:])
    assert "Traceback" not in err and words in err, (case, err[-2000:])
    assert not any(out.glob("*.safetensors")) and not (out / "README.md").exists()


def test_the_cli_exits_2_without_a_traceback(tmp_path):
    """One case end to end in a real process: exit status and stderr as a user sees them."""
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run", "--beta=-0.1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "orpo-dist train: error: beta is -0.1" in result.stderr


def test_output_dir_under_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", blocker / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"lies under {blocker}, which is a file" in result.stderr
    assert blocker.read_text() == "not a folder"  # nothing lost


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "has no config.json"),
    (lambda d: (d / "config.json").write_text('{"hidden_size": 8}'), "has no model_type"),
    (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
], ids=["empty folder", "config without model_type", "damaged config"])
def test_a_model_folder_that_is_no_model_is_named(tmp_path, make, words):
    folder = tmp_path / "my-model"
    folder.mkdir()
    make(folder)
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run",
                     "--model_name_or_path", folder, "--tokenizer_name_or_path", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(folder) in result.stderr and words in result.stderr

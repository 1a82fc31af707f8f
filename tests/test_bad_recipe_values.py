"""Recipe values that cannot train are refused before anything loads: one table of cases, each run
as a user runs it (`orpo-dist train`), each checked for exit status 2, no traceback, the words of
the message, and an output folder with no model in it."""

from __future__ import annotations

import os

import pytest

from .helpers import TINY_RECIPE, run_case, run_cli

# No network: nothing listens on the discard port, so a connection is refused at once.
NO_HUB = {"HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}
OFFLINE = {"HF_HUB_OFFLINE": "1"}
NO_TOKEN = {"HF_TOKEN": None, "HUGGING_FACE_HUB_TOKEN": None}

# (case id, extra CLI args or a recipe's YAML lines, words the message must hold[, environment])
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
    ("held-out share 1.5", "eval_split_size: 1.5", "eval_split_size must be in [0, 1)"),
    ("negative warmup", ["--warmup_steps=-3"], "warmup_steps is -3"),
    ("nothing to train", ["--num_train_epochs", "0", "--max_steps=-1"], "num_train_epochs is 0.0 and max_steps is unset"),
    ("max_train_samples 0", ["--max_train_samples", "0"], "max_train_samples is 0"),
    ("dataset_columns as a list", "dataset_columns: [question, good, bad]", "dataset_columns is a list"),
    ("logger not installed", ["--report_to", "swanlab"], "swanlab requested but not installed"),
    ("unknown logger", ["--report_to", "tensorbored"], "'tensorbored' is not a logger the Trainer knows"),
    ("optimiser that does not exist", ["--optim", "adamw_nonsense"], "adamw_nonsense"),
    ("QLoRA without LoRA", ["--load_in_4bit", "true", "--use_peft", "false"], "can only be trained with LoRA"),
    ("unknown field", ["--lerning_rate", "1e-5"], "learning_rate"),
    ("hub model, no network", ["--model_name_or_path", "acme/llama-99b"],
     "model 'acme/llama-99b': not a local file or folder, not in the local Hugging Face cache, and the hub cannot "
     "be reached (127.0.0.1:9", NO_HUB),
    ("hub dataset, no network", ["--dataset_name", "acme/prefs"], "dataset 'acme/prefs': not a local file", NO_HUB),
    ("hub dataset, HF_HUB_OFFLINE", ["--dataset_name", "acme/prefs"], "hub cannot be reached (HF_HUB_OFFLINE is set)",
     OFFLINE),
    ("push_to_hub without a token", ["--push_to_hub", "true"], "push_to_hub is on but no Hugging Face token is set",
     NO_TOKEN),
    ("push_to_hub, no network", ["--push_to_hub", "true"], "push_to_hub is on but the Hugging Face hub cannot be "
     "reached (127.0.0.1:9", {**NO_HUB, "HF_TOKEN": "hf_not_a_real_token"}),
    ("push_to_hub, HF_HUB_OFFLINE", ["--push_to_hub", "true"], "hub cannot be reached (HF_HUB_OFFLINE is set)",
     {**OFFLINE, "HF_TOKEN": "hf_not_a_real_token"}),
]


@pytest.mark.parametrize("case, extra, words, env", [(*c, {})[:4] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch, case, extra, words, env):
    """`orpo-dist train` in this process (the CLI's own entry point and error handling; a
    subprocess per case would spend most of its time importing TRL)."""
    import huggingface_hub.constants

    from orpo_dist.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

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


def test_output_dir_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status, _, err = run_case(["train", "--config", TINY_RECIPE, "--output_dir", blocker / "run"], capsys)
    assert status == 2 and "Traceback" not in err
    assert f"lies under {blocker}, which is a file" in err
    assert blocker.read_text() == "not a folder"  # nothing lost


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "has no config.json"),
    (lambda d: (d / "config.json").write_text('{"hidden_size": 8}'), "has no model_type"),
    (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
], ids=["empty folder", "config without model_type", "damaged config"])
def test_a_model_folder_that_is_no_model_is_named(tmp_path, capsys, make, words):
    folder = tmp_path / "my-model"
    folder.mkdir()
    make(folder)
    status, _, err = run_case(["train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run",
                               "--model_name_or_path", folder, "--tokenizer_name_or_path", folder], capsys)
    assert status == 2 and "Traceback" not in err, err[-3000:]
    assert str(folder) in err and words in err


def test_hub_needs_are_told_apart(tmp_path, monkeypatch):
    """Local paths, built-in aliases and the bundled set need no hub; cached repos need none either,
    and when the hub does not answer the run switches to the cache instead of retrying."""
    import huggingface_hub.constants

    from orpo_dist.hub_access import check_hub_access
    from orpo_dist.train import recipe_needs
    from orpo_dist.recipe import parse

    def needs(*args):
        return recipe_needs(parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path / "r"), *args]))

    assert needs().downloads == [] and needs().cached == []  # alias + bundled set
    local = needs("--model_name_or_path", str(tmp_path), "--dataset_name", str(TINY_RECIPE))
    assert local.downloads == [] and local.cached == []
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--acme--tiny").mkdir(parents=True)
    hub = needs("--model_name_or_path", "acme/tiny", "--dataset_name", "acme/prefs")
    assert hub.cached == [("model", "acme/tiny")] and hub.downloads == [("dataset", "acme/prefs")]

    cached_only = needs("--model_name_or_path", "acme/tiny")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    said = []
    check_hub_access(cached_only, said.append)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert "using the local cache only" in said[0]

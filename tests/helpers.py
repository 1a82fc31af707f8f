"""Small shared helpers for tests (not fixtures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = REPO / "orpo_dist" / "recipes" / "tiny.yaml"


# A llama small enough to train in seconds on 2 cores (the tiny recipe's shape: orpo_dist/recipes/tiny.yaml).
TINY_LLAMA_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2)


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapter(model, seed=1):
    """A LoRA adapter (r 4) over every linear layer, with random (not zero) B: it changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False))


def jsonl_text(rows) -> str:
    """Rows (dicts, or strings written as they are: damaged lines) one per line."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def write_jsonl(path, rows, opener=open):
    """jsonl_text(rows) written to `path` (UTF-8; `opener=gzip.open` for .gz); returns `path`."""
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(jsonl_text(rows))
    return path


def prepare(path, tokenizer=None, max_length=1024, seed=0, max_prompt_length=None, **data_fields):
    """The data layer on a data file as training calls it (no held-out split unless asked); the
    lines it logged are in `.log`."""
    from orpo_dist.data import prepare_datasets
    from orpo_dist.recipe import DataArguments

    data_fields.setdefault("eval_split_size", 0.0)
    lines: list[str] = []
    data = prepare_datasets(DataArguments(dataset_name=str(path), **data_fields), tokenizer, max_length, seed,
                            log=lines.append, max_prompt_length=max_prompt_length)
    data.log = lines
    return data


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_logs(output_dir) -> list[dict]:
    """Per-step training log records (not the final summary)."""
    from orpo_dist.run_folder import training_logs

    return training_logs(output_dir)


def run_cli(*args, timeout=600, env=None, python_flags=()) -> subprocess.CompletedProcess:
    """`orpo-dist ARGS` in a subprocess; python_flags go to the interpreter (`-X importtime` lists
    every module the command imports on stderr)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "orpo_dist", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def run_case(argv, capsys):
    """`orpo-dist ARGV` in this process, as the user runs it: (exit status, stdout, stderr)."""
    from orpo_dist.cli import main

    try:
        status = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse refusing a value's type
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_refusal(status, err, words, code=2):
    """Exit `code`, no traceback, exactly one `orpo-dist ...: error:` line, holding every word."""
    assert status == code, (status, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("orpo-dist") and ": error: " in line]
    assert len(errors) == 1, err[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])


def files_of(folder) -> dict:
    """Every file under `folder` and its bytes (to show that a refusal changed none of them)."""
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def imported_modules(stderr: str) -> set[str]:
    """Modules named by `-X importtime`'s lines on a command's stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


# Secret-looking values a user has in the environment; no file a run writes may hold one.
SECRETS = {
    "HF_TOKEN": "hf_orpoDistTestSecretToken0001",
    "HUGGING_FACE_HUB_TOKEN": "hf_orpoDistTestSecretToken0002",
    "WANDB_API_KEY": "wandbOrpoDistTestSecretKey0003",
    "OPENAI_API_KEY": "sk-orpoDistTestSecretKey0004",
    "AWS_SECRET_ACCESS_KEY": "awsOrpoDistTestSecretKey0005",
}


def files_holding(values, *folders) -> list[str]:
    """Every file under `folders` whose bytes hold one of `values` (binary files and pickles too)."""
    found = []
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {v[:6]}..." for v in values if v.encode() in data]
    return found


def run_over_hub_base(tmp, lora_run, repo="some-org/some-model"):
    """A copy of a LoRA run whose recipe names a hub model (`repo`) as its base."""
    import shutil

    import yaml

    run = Path(tmp) / "adapter-run"
    shutil.copytree(lora_run, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    (run / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "model_name_or_path": repo}))
    return run

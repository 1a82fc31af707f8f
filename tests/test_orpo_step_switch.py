"""The switch: fast wherever it is exact, the stock (padded) step one field away, a notice (never a
silent difference) when a model needs the stock step, and the same metrics in metrics.jsonl."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, LlamaConfig, Qwen2Config

from orpo_dist.errors import UserError
from orpo_dist.orpo.select import use_fast_step
from orpo_dist.recipe import parse
from orpo_dist.train import run

from .helpers import TINY_RECIPE, train_logs


def _config(cls, attn="sdpa", **fields):
    config = cls(**fields)
    config._attn_implementation = attn
    return config


def test_fast_where_exact():
    assert use_fast_step("auto", _config(LlamaConfig)) is True
    assert use_fast_step("auto", _config(Qwen2Config, attn="eager")) is True
    assert use_fast_step("fast", _config(LlamaConfig)) is True
    assert use_fast_step("stock", _config(LlamaConfig)) is False


@pytest.mark.parametrize("config, words", [
    (_config(GPT2Config), "architecture 'gpt2'"),
    (_config(LlamaConfig, attn="flash_attention_2"), "flash_attention_2"),
    (_config(LlamaConfig, logits_scaling=2.0), "logits_scaling=2.0"),
])
def test_auto_falls_back_with_a_notice(config, words):
    notices = []
    assert use_fast_step("auto", config, log=notices.append) is False
    assert len(notices) == 1 and words in notices[0] and "stock step" in notices[0]
    with pytest.raises(UserError, match="orpo_step: stock"):
        use_fast_step("fast", config)


def test_recipe_field_validates():
    with pytest.raises((UserError, SystemExit)):
        parse(["--config", str(TINY_RECIPE), "--orpo_step", "turbo"])


def test_same_metrics_and_losses_either_way(tmp_path, capsys):
    logs = {}
    for step in ("fast", "stock"):
        out = tmp_path / step
        run(parse(["--config", str(TINY_RECIPE), "--output_dir", str(out), "--max_steps", "4",
                   "--logging_steps", "1", "--save_strategy", "no", "--orpo_step", step]))
        assert f"{step} ORPO step" in capsys.readouterr().out
        logs[step] = train_logs(out)
    fast, stock = logs["fast"], logs["stock"]
    assert len(fast) == len(stock) == 4
    assert [set(r) for r in fast] == [set(r) for r in stock]
    for a, b in zip(fast, stock):  # same data, same init, four optimizer steps apart at most 1e-4
        for key in ("loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "rewards/rejected"):
            assert abs(a[key] - b[key]) < 1e-4, (a["step"], key, a[key], b[key])


@pytest.mark.parametrize("step", ["fast", "stock"])
def test_group_by_length_groups_pairs_by_their_real_cost(tmp_path, step):
    """transformers' length-grouped sampler runs with either step: each row's length is the pair's
    unique tokens, the sampler reads them, and a run trains with it."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from orpo_dist.data.tokenize import pair_tokens

    seen = []
    out = tmp_path / "grouped"
    run(parse(["--config", str(TINY_RECIPE), "--output_dir", str(out), "--max_steps", "3", "--logging_steps", "1",
               "--save_strategy", "no", "--train_sampling_strategy", "group_by_length", "--orpo_step", step]),
        on_trainer=seen.append)
    trainer = seen[0]
    data = trainer.train_dataset
    want = [pair_tokens(c, r) for c, r in zip(data["chosen_input_ids"], data["rejected_input_ids"])]
    assert data["length"] == want and len(set(want)) > 1
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler) and list(sampler.lengths) == want
    assert len(train_logs(out)) == 3

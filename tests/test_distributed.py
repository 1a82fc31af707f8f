"""Distributed behaviour, proven with 2 CPU processes (gloo; DeepSpeed's CPU accelerator).

Each run goes through the same command builder as `orpo-dist launch`, with tests/dist_probe.py as
the per-process entry point (orpo-dist's trainer plus a probe that dumps what each rank held).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .dist_runs import (
    ROWS, SIX_STEPS, TINY, assert_adapter_trained, continue_checkpoint, launch, launch_log, losses, relative_diffs, reloaded_logits,
)
from .helpers import train_logs

pytestmark = pytest.mark.slow


def assert_ranks_synchronised(ranks, steps, accumulation):
    """Two ranks form one run: world of 2, the global batch split between them, equal parameters."""
    r0, r1 = ranks[0], ranks[1]
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["global_step"] == steps
    assert [len(b) for b in r0["micro_batches"]] == [4] * steps * accumulation == [len(b) for b in r1["micro_batches"]]
    seen0 = {h for b in r0["micro_batches"] for h in b}
    seen1 = {h for b in r1["micro_batches"] for h in b}
    assert not seen0 & seen1  # each pair went to one rank only
    assert r0["checksums"] == r1["checksums"]  # gradients were all-reduced: same parameters


def test_ddp_ranks_stay_identical_and_split_the_global_batch(tmp_path, tiny_model_dir, pairs):
    ranks = launch("ddp", 2, tmp_path / "ddp", tiny_model_dir, pairs, "--max_steps", "-1",
                   "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2")
    # global batch = 4 per device x 2 ranks x 2 accumulation = 16: one epoch of 96 pairs is 6 steps.
    assert_ranks_synchronised(ranks, steps=ROWS // 16, accumulation=2)
    assert ranks[0]["trainer"] == ranks[1]["trainer"] == "fast"  # the default step
    assert ranks[0]["trl_experimental"] == ranks[1]["trl_experimental"] == []  # ORPO is orpo-dist's own
    seen = {h for r in ranks.values() for b in r["micro_batches"] for h in b}
    assert len(seen) == ROWS  # together they saw every pair once
    assert losses(tmp_path / "ddp")[-1] < losses(tmp_path / "ddp")[0]


def test_unsynchronised_ranks_fail_the_same_check(tmp_path, tiny_model_dir, pairs):
    """The trap in the field notes: --multi_gpu on a CPU without use_cpu starts two processes
    that each train alone on all the data (world size 1) -- with identical seeds they even end
    with identical parameters. With orpo-dist's automatic device settings switched off, the
    check above catches it."""
    ranks = launch("ddp", 2, tmp_path / "nosync", tiny_model_dir, pairs, "--max_steps", "3", "--bf16", "false",
                   env={"ORPO_DIST_AUTO_DEVICE": "0"})
    assert set(ranks) == {0, 1}
    with pytest.raises(AssertionError):
        assert_ranks_synchronised(ranks, steps=3, accumulation=1)


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, tiny_model_dir, pairs):
    out = tmp_path_factory.mktemp("zero3") / "run"
    # A head chunk of 5 positions: ranks hold different numbers of targets, so they would call the
    # partitioned head a different number of times (a collective mismatch, which aborted real
    # runs) unless they agree on the count (orpo_step/head.py).
    ranks = launch("zero3", 2, out, tiny_model_dir, pairs, "--max_steps", "6", "--save_steps", "3",
                   "--per_device_train_batch_size", "4", "--orpo_chunk_size", "5")
    return out, ranks


def test_zero3_partitions_every_parameter(zero3_run):
    _, ranks = zero3_run
    for rank in (0, 1):
        shards = ranks[rank]["shards"]
        assert shards, "no ZeRO-3 parameters found"
        partitioned = {n: s for n, s in shards.items() if s[0] < s[1]}
        # Small vectors (norms) stay whole below stage3_param_persistence_threshold; the rest is split.
        big = {n: s for n, s in shards.items() if s[1] >= 1000}
        assert big and set(big) <= set(partitioned)
        for local, full in big.values():
            assert local == -(-full // 2)  # this rank holds half (rounded up)
    assert ranks[0]["checksums"] == ranks[1]["checksums"]


@pytest.fixture(scope="module")
def stock_single_run(tmp_path_factory, tiny_model_dir, pairs):
    """One process, the stock step, global batch 8: the reference trajectory."""
    out = tmp_path_factory.mktemp("stock-single") / "run"
    ranks = launch("single", 1, out, tiny_model_dir, pairs, "--max_steps", "6", "--save_strategy", "no",
                   "--per_device_train_batch_size", "8", "--orpo_step", "stock")
    assert ranks[0]["trainer"] == "stock"  # the padded forward, TRL's algorithm
    return out


# Every figure orpo-dist and TRL both log, per step: the same runs under the same launcher.
FIGURES = ("loss", "grad_norm", "nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected",
           "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")
TRL_RTOL = 1e-5


def assert_logs_equal_trls(out, reference):
    ours, trl = train_logs(out), train_logs(reference)
    assert len(ours) == len(trl) == 6
    worst = 0.0
    for a, b in zip(ours, trl, strict=True):
        for key in FIGURES:
            assert a[key] == pytest.approx(b[key], rel=TRL_RTOL, abs=1e-6), (a["step"], key, a[key], b[key])
            worst = max(worst, abs(a[key] - b[key]) / max(abs(b[key]), 1e-6))
    print(f"{out.name} against TRL's trainer: largest relative difference of a logged figure {worst:.1e}")


def test_ddp_fast_step_equals_trls_trainer_and_one_stock_process(ddp_run, tmp_path, tiny_model_dir, pairs,
                                                                 stock_single_run):
    (out, ranks), reference = ddp_run, tmp_path / "ddp-trl"
    assert ranks[0]["trainer"] == "fast" and ranks[0]["checksums"] == ranks[1]["checksums"]
    # The data was prepared once, by the node's main process; rank 1 loaded what it cached.
    assert [ranks[0]["prepared_data"], ranks[1]["prepared_data"]] == [1, 0]
    trl = launch("ddp", 2, reference, tiny_model_dir, pairs, *SIX_STEPS, "--save_strategy", "no",
                 env={"PROBE_REFERENCE": "trl"})
    assert trl[0]["trainer"] == "trl" and trl[0]["micro_batches"] == ranks[0]["micro_batches"]
    assert_logs_equal_trls(out, reference)
    # Against one process with the same global batch: each rank averages its NLL over its own tokens
    # before ranks are averaged (TRL's rule too), so 2% per step, as for ZeRO-3 below.
    for a, b in zip(losses(out), losses(stock_single_run), strict=True):
        assert a == pytest.approx(b, rel=0.02)


def test_zero3_equals_trls_trainer_under_zero3(zero3_run, tmp_path, tiny_model_dir, pairs):
    out, ranks = zero3_run
    reference = tmp_path / "zero3-trl"
    trl = launch("zero3", 2, reference, tiny_model_dir, pairs, "--max_steps", "6", "--save_strategy", "no",
                 "--per_device_train_batch_size", "4", env={"PROBE_REFERENCE": "trl"})
    assert trl[0]["trainer"] == "trl" and trl[0]["micro_batches"] == ranks[0]["micro_batches"]
    assert ranks[0]["trl_experimental"] == []
    assert_logs_equal_trls(out, reference)


def test_zero3_matches_one_process_with_the_same_global_batch(zero3_run, stock_single_run):
    """ZeRO-3 over 2 processes with the fast step against 1 process with the stock step."""
    out, ranks = zero3_run
    assert ranks[0]["trainer"] == "fast"
    single = stock_single_run
    two, one = losses(out), losses(single)
    assert len(two) == len(one) == 6
    assert two[-1] < two[0] - 0.3  # it learns
    # Same 8 pairs per step; the only difference is that each rank averages its NLL over its own
    # tokens before ranks are averaged: stated tolerance 2% per step.
    for a, b in zip(two, one):
        assert a == pytest.approx(b, rel=0.02)


def test_zero3_saved_model_reloads_with_the_same_logits(zero3_run):
    out, ranks = zero3_run
    torch.testing.assert_close(reloaded_logits(out), torch.tensor(ranks[0]["logits"]), rtol=1e-5, atol=1e-5)


def test_zero2_trains_in_sync(tmp_path, tiny_model_dir, pairs):
    ranks = launch("zero2", 2, tmp_path / "z2", tiny_model_dir, pairs, "--max_steps", "6", "--save_strategy", "no")
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    trajectory = losses(tmp_path / "z2")
    assert trajectory[-1] < trajectory[0] - 0.3


@pytest.mark.parametrize("quantised", [False, True], ids=["lora", "qlora"])
@pytest.mark.parametrize("strategy", ["zero3", "fsdp2"])
def test_sharded_adapters_are_saved_whole_and_change_the_model(tmp_path, tiny_model_dir, pairs, quantised, strategy):
    out = tmp_path / "adapter"
    extra = ["--load_in_4bit"] if quantised else []
    ranks = launch(strategy, 2, out, tiny_model_dir, pairs, "--max_steps", "4", "--save_strategy", "no", "--use_peft",
                   "--lora_target_modules", "all-linear", "--learning_rate", "1e-2", *extra)
    assert ranks[0]["checksums"] == ranks[1]["checksums"] and ranks[0]["shards"]  # sharded, in sync
    assert_adapter_trained(out, tiny_model_dir)


# Elastic resume: the same pairs in each step (the global batch kept), the ZeRO state carried over
# by DeepSpeed's universal checkpoint; the only difference left is per-rank NLL averaging when the
# number of ranks changes (the 2% stated above), measured far smaller here.
ELASTIC_RTOL = 2e-3


def test_zero3_elastic_resume_2_to_1_and_1_to_2_processes(zero3_run, tmp_path, tiny_model_dir, pairs):
    """2 -> 1: zero3_run's checkpoint-3 (2 processes x batch 4) continued by 1 process; 1 -> 2: a
    1-process run's checkpoint-2 (batch 4 x accumulation 2) continued by 2 processes. Each against
    the run it continues. (A resumed run keeps its checkpoint's save_steps: transformers' rule.)"""
    reference, _ = zero3_run
    common = ["--per_device_train_batch_size", "4", "--orpo_chunk_size", "5"]
    one = tmp_path / "on-one"
    continue_checkpoint(reference, 3, one)
    launch("zero3", 1, one, tiny_model_dir, pairs, *common, "--max_steps", "6", "--resume")
    assert [r["step"] for r in train_logs(one)] == [1, 2, 3, 4, 5, 6]
    assert (one / "checkpoint-3" / "latest_universal").is_file()
    said = launch_log(one)
    assert ("resuming a checkpoint of 2 process(es) on 1: per-device batch x gradient accumulation 4 x 1 -> 4 x 2, "
            "keeping the global batch at 8; DeepSpeed's shards are loaded as a universal checkpoint") in said
    assert json.loads((one / "checkpoint-6" / "COMPLETE").read_text())["gradient_accumulation_steps"] == 2
    down = relative_diffs(train_logs(one), train_logs(reference), {4, 5, 6})

    single = tmp_path / "single"
    launch("zero3", 1, single, tiny_model_dir, pairs, *common, "--max_steps", "4", "--save_steps", "2",
           "--gradient_accumulation_steps", "2")
    two = tmp_path / "on-two"
    continue_checkpoint(single, 2, two)
    ranks = launch("zero3", 2, two, tiny_model_dir, pairs, *common, "--max_steps", "4", "--save_steps", "2",
                   "--gradient_accumulation_steps", "2", "--resume")
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    assert json.loads((two / "checkpoint-4" / "COMPLETE").read_text())["world_size"] == 2
    up = relative_diffs(train_logs(two), train_logs(single), {3, 4})
    print(f"elastic resume, relative loss differences: 2 -> 1 {['%.1e' % d for d in down]}, "
          f"1 -> 2 {['%.1e' % d for d in up]}")
    assert len(down) == 3 and len(up) == 2 and max(down + up) < ELASTIC_RTOL


def test_a_zero3_checkpoint_resumed_without_deepspeed_is_refused(zero3_run, tmp_path):
    from orpo_dist.errors import UserError
    from orpo_dist.recipe import parse
    from orpo_dist.train import resolve_checkpoint
    from orpo_dist.elastic import plan_resume

    reference, _ = zero3_run
    out = tmp_path / "plain"
    continue_checkpoint(reference, 3, out)
    recipe = parse(["--config", str(TINY), "--output_dir", str(out), "--resume"])
    with pytest.raises(UserError, match=r"holds DeepSpeed ZeRO state and this run is on plain PyTorch.*"
                                        r"--strategy zero2\|zero3\|"):
        plan_resume(resolve_checkpoint(recipe), recipe.training, print)

"""FSDP2 (`--strategy fsdp2`), proven with 2 CPU processes over gloo as ZeRO is in test_distributed.py.

The runs go through accelerate's own FSDP2 code (fully_shard per decoder layer, DCP checkpoints),
reached on CPU processes by orpo_dist/cpu_fsdp.py; what only a GPU can show (NCCL, bf16 mixed
precision, speed) is benchmarks/gpu_check.sh's. LoRA and QLoRA adapters under FSDP2:
test_distributed.py's adapter test, parametrised over both engines; a rank killed with SIGKILL,
then --resume repeating the losses: test_dead_rank.py, likewise.
"""

from __future__ import annotations

import json

import pytest
import torch

from .dist_runs import SIX_STEPS, continue_checkpoint, launch, launch_log, losses, relative_diffs, reloaded_logits
from .helpers import train_logs

pytestmark = pytest.mark.slow
COMMON = SIX_STEPS
ELASTIC_RTOL = 2e-3  # as for ZeRO-3 (test_distributed.py): per-rank NLL averaging changes with the ranks


@pytest.fixture(scope="module")
def fsdp2_run(tmp_path_factory, tiny_model_dir, pairs):
    """Full fine-tuning, fast step, checkpoints at steps 3 and 6."""
    out = tmp_path_factory.mktemp("fsdp2") / "run"
    return out, launch("fsdp2", 2, out, tiny_model_dir, pairs, *COMMON, "--save_steps", "3")


def test_each_rank_holds_its_half_of_every_parameter_and_ranks_agree(fsdp2_run):
    out, ranks = fsdp2_run
    assert ranks[0]["engine"].endswith("/fsdp2")  # accelerate's fully_shard path, not DDP or one process
    assert ranks[0]["trainer"] == "fast"
    shards = [ranks[r]["shards"] for r in (0, 1)]
    assert shards[0] and set(shards[0]) == set(shards[1]) == set(ranks[0]["checksums"])  # every parameter
    for name, (local, full) in shards[0].items():
        assert local == shards[1][name][0] == full // 2, name  # dim-0 halves (the tiny shapes are even)
    assert ranks[0]["checksums"] == ranks[1]["checksums"]  # the gathered parameters agree
    checkpoint = out / "checkpoint-3"
    assert (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()  # torch DCP shards
    assert (checkpoint / "optimizer_0" / ".metadata").is_file()
    assert json.loads((checkpoint / "COMPLETE").read_text())["world_size"] == 2


def test_losses_equal_ddp_on_the_same_global_batch(fsdp2_run, ddp_run):
    out, ranks = fsdp2_run
    ddp_out, ddp = ddp_run
    assert ddp[0]["micro_batches"] == ranks[0]["micro_batches"]
    for ours, theirs in zip(train_logs(out), train_logs(ddp_out), strict=True):
        for key in ("loss", "nll_loss", "log_odds_ratio", "rewards/margins"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), (ours["step"], key)
        # The logged norm is computed over the DTensor shards: measured 1e-5 to 1e-4 apart from DDP's
        # while the losses (which follow every update) stay within 3e-7.
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-3)
    assert losses(out)[-1] < losses(out)[0]


def test_the_final_model_is_saved_whole_and_reloads_with_the_same_logits(fsdp2_run, tiny_model_dir):
    from safetensors.torch import load_file

    out, ranks = fsdp2_run
    saved = load_file(out / "model.safetensors")
    reference = load_file(tiny_model_dir / "model.safetensors")
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in reference.items()}
    torch.testing.assert_close(reloaded_logits(out), torch.tensor(ranks[0]["logits"]), rtol=1e-5, atol=1e-5)


def test_resume_on_one_process_reshards_and_keeps_the_global_batch(fsdp2_run, tmp_path, tiny_model_dir, pairs):
    reference, _ = fsdp2_run
    one = tmp_path / "on-one"
    continue_checkpoint(reference, 3, one)
    ranks = launch("fsdp2", 1, one, tiny_model_dir, pairs, *COMMON, "--resume")
    assert ranks[0]["engine"].endswith("/fsdp2") and ranks[0]["world_size"] == 1
    said = launch_log(one)
    assert ("resuming a checkpoint of 2 process(es) on 1: per-device batch x gradient accumulation 4 x 1 -> "
            "4 x 2, keeping the global batch at 8\n") in said  # DCP reshards: no conversion
    assert [r["step"] for r in train_logs(one)] == [1, 2, 3, 4, 5, 6]
    diffs = relative_diffs(train_logs(one), train_logs(reference), {4, 5, 6})
    print(f"FSDP2 2 -> 1 process resume, relative loss differences {['%.1e' % d for d in diffs]}")
    assert len(diffs) == 3 and max(diffs) < ELASTIC_RTOL


def test_fsdp2_offload_takes_the_offload_path_and_trains_as_fsdp2(fsdp2_run, tmp_path, tiny_model_dir, pairs):
    """`fsdp2-offload`: torch's CPUOffloadPolicy (shards, gradients and optimizer step on the host)
    gives the same trajectory as fsdp2 on the same global batch."""
    reference, ranks = fsdp2_run
    out = tmp_path / "offload"
    offload = launch("fsdp2-offload", 2, out, tiny_model_dir, pairs, *COMMON, "--save_strategy", "no")
    assert offload[0]["fsdp_offload"] == "CPUOffloadPolicy" and ranks[0]["fsdp_offload"] == "OffloadPolicy"
    assert offload[0]["checksums"] == offload[1]["checksums"]
    assert all(local == full // 2 for local, full in offload[0]["shards"].values())
    for a, b in zip(losses(out), losses(reference), strict=True):
        assert a == pytest.approx(b, rel=1e-5)

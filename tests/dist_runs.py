"""Distributed test runs: 2 CPU processes launched the way `orpo-dist launch` launches them.

Each run goes through the same command builder, with tests/dist_probe.py as the per-process entry
point (orpo-dist's trainer plus a probe that dumps what each rank held). Shared by
test_distributed.py (DDP, ZeRO) and test_fsdp2.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import torch

from orpo_dist.launcher.command import Layout, build

from .helpers import REPO, TINY_RECIPE, train_logs, write_jsonl

PROBE = REPO / "tests" / "dist_probe.py"
TINY = TINY_RECIPE
ROWS = 96
PROBE_INPUT = [[1, 42, 314, 2718, 28, 99, 7]]  # dist_probe's fixed input for the logits it records
# Six steps of 2 x 4 pairs; a head chunk of 5 positions, so that ranks hold different numbers of
# chunks (ZeRO-3 must still issue the same collectives on each: orpo/fast/head.py).
SIX_STEPS = ("--max_steps", "6", "--per_device_train_batch_size", "4", "--orpo_chunk_size", "5")


def write_pairs(path: Path) -> Path:
    """96 distinct arithmetic preference pairs (chosen right, rejected wrong)."""
    rng = random.Random(7)
    seen, rows = set(), []
    while len(rows) < ROWS:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        rows.append({"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.",
                     "rejected": f"{a} plus {b} is {a + b + rng.randint(1, 9)}."})
    return write_jsonl(path, rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(strategy, nproc, out, model_dir, pairs, *overrides, env=None, crash_at=None, check=True):
    """Run the probe under `strategy`; return {rank: probe record}."""
    probe_dir = Path(str(out) + "-probe")
    args = ["--model_name_or_path", str(model_dir), "--random_init", "false", "--dataset_name", str(pairs),
            "--eval_split_size", "0", "--max_train_samples", str(ROWS), "--output_dir", str(out),
            "--logging_steps", "1", *map(str, overrides)]
    command = build(strategy, Layout(nproc, main_process_port=free_port()), str(TINY), args, on_gpu=False,
                    entry=(str(PROBE),))
    full_env = {**os.environ, **command.env, "PROBE_DIR": str(probe_dir), **(env or {})}
    if crash_at is not None:
        full_env["PROBE_CRASH_AT"] = str(crash_at)
    result = subprocess.run(command.argv, env=full_env, cwd=REPO, capture_output=True, text=True, timeout=900)
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / "launch.log").write_text(result.stdout + result.stderr)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in probe_dir.glob("rank*.json")}


def launch_log(out) -> str:
    return Path(str(out) + "-probe", "launch.log").read_text()


def losses(out):
    return [r["loss"] for r in train_logs(out)]


def continue_checkpoint(source_out, step, out):
    """A new run folder holding only `source_out`'s checkpoint-STEP (and its logs up to it)."""
    out.mkdir(parents=True)
    shutil.copytree(source_out / f"checkpoint-{step}", out / f"checkpoint-{step}")
    kept = [r for r in train_logs(source_out) if r["step"] <= step]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))


def relative_diffs(got, want, steps):
    by_step = {r["step"]: r["loss"] for r in want}
    return [abs(r["loss"] - by_step[r["step"]]) / by_step[r["step"]] for r in got if r["step"] in steps]


def reloaded_logits(out) -> torch.Tensor:
    """The saved model's logits of the probe's input (what dist_probe recorded before the save)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        return model(torch.tensor(PROBE_INPUT)).logits[0, -1, :16]


def assert_adapter_trained(out, base_dir) -> None:
    """The saved adapter holds whole tensors (not a rank's empty shards), trained, and it changes
    the base model's logits when loaded onto it."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all(t.numel() > 0 for t in weights.values())
    assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)  # B starts at 0: it trained
    ids = torch.tensor([[1, 42, 314, 2718, 28]])
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out).eval()
        after = tuned(ids).logits
    assert not torch.allclose(before, after, atol=1e-4)

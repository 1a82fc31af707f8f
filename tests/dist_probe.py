"""Per-process entry point for distributed tests: orpo-dist's trainer plus a probe.

Started by `accelerate launch` exactly as `-m orpo_dist.train` would be (same command builder,
same recipe), it runs orpo_dist.train.run and, per rank, writes PROBE_DIR/rank{R}.json with:
what each micro-batch held, a checksum of every full parameter after training, how much of each
parameter this rank stores locally (ZeRO-3 shards), and the logits of a fixed input.
Env: PROBE_DIR (required), PROBE_CRASH_AT (optional step after which the process dies).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl.experimental.orpo import ORPOTrainer

from orpo_dist.recipe import parse
from orpo_dist.train import run

PROBE_INPUT = [[1, 42, 314, 2718, 28, 99, 7]]
micro_batches: list[list[str]] = []
trainer_class: list[str] = []

_compute_loss = ORPOTrainer.compute_loss


def _recording_compute_loss(self, model, inputs, *args, **kwargs):
    rows = inputs["chosen_input_ids"]
    micro_batches.append([hashlib.sha1(bytes(str(r.tolist()), "utf8")).hexdigest()[:12] for r in rows])
    return _compute_loss(self, model, inputs, *args, **kwargs)


ORPOTrainer.compute_loss = _recording_compute_loss


def _full_parameters(model):
    """Every parameter gathered whole (a no-op outside ZeRO-3); collective under ZeRO-3."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    import contextlib

    return contextlib.nullcontext()


class Probe(TrainerCallback):
    def __init__(self, out: Path, crash_at: int | None):
        self.out, self.crash_at = out, crash_at

    def on_step_end(self, args, state, control, **kwargs):
        if self.crash_at is not None and state.global_step == self.crash_at:
            os._exit(17)  # a hard kill: no cleanup, no save

    def on_train_end(self, args, state, control, model=None, **kwargs):
        rank = int(os.environ.get("RANK", "0"))
        shards = {}
        for name, p in model.named_parameters():
            if hasattr(p, "ds_numel"):
                shards[name] = [p.ds_tensor.numel(), p.ds_numel]
        with _full_parameters(model):
            checksums = {name: float(p.detach().double().sum()) for name, p in model.named_parameters()}
            with torch.no_grad():
                logits = model(torch.tensor(PROBE_INPUT)).logits[0, -1, :16].tolist()
        record = {
            "rank": rank,
            "world_size": args.world_size,
            "global_step": state.global_step,
            "micro_batches": micro_batches,
            "trainer": trainer_class[0] if trainer_class else None,
            "checksums": checksums,
            "shards": shards,
            "logits": logits,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    crash = os.environ.get("PROBE_CRASH_AT")
    run(parse(sys.argv[1:]), extra_callbacks=[Probe(Path(os.environ["PROBE_DIR"]), int(crash) if crash else None)],
        on_trainer=lambda trainer: trainer_class.append(type(trainer).__name__))

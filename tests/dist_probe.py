"""Per-process entry point for distributed tests: orpo-dist's trainer plus a probe.

Started by `accelerate launch` exactly as `-m orpo_dist.train` would be (same command builder,
same recipe), it runs orpo_dist.train.run and, per rank, writes PROBE_DIR/rank{R}.json with:
what each micro-batch held, a checksum of every full parameter after training, how much of each
parameter this rank stores locally (ZeRO-3 shards), and the logits of a fixed input.
It also counts the preparations of the data this process ran (each node's main process prepares,
the other ranks load what it cached). Env: PROBE_DIR (required), PROBE_CRASH_AT (optional step after which the process dies),
PROBE_REFERENCE=trl (train with TRL's experimental ORPOTrainer instead: the reference the tests
compare orpo-dist's trainer with under DDP and ZeRO-3; everything else in the run is the same).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

import orpo_dist.data.cache
import orpo_dist.orpo.trainer
from orpo_dist.recipe import parse
from orpo_dist.train import run

PROBE_INPUT = [[1, 42, 314, 2718, 28, 99, 7]]
micro_batches: list[list[str]] = []
trainer_class: list[str] = []


def _recording(compute_loss):
    def recording_compute_loss(self, model, inputs, *args, **kwargs):
        rows = inputs["chosen_input_ids"]
        micro_batches.append([hashlib.sha1(bytes(str(r.tolist()), "utf8")).hexdigest()[:12] for r in rows])
        return compute_loss(self, model, inputs, *args, **kwargs)
    return recording_compute_loss


def trl_reference():
    """TRL's ORPOTrainer taking the arguments train.run gives orpo-dist's trainer."""
    import types

    from trl.experimental.orpo import ORPOTrainer

    class TrlReference(ORPOTrainer):
        def __init__(self, *args, forward=None, notice=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.forward = types.SimpleNamespace(name="trl")

        def create_model_card(self, *args, **kwargs):
            return None

    TrlReference.compute_loss = _recording(ORPOTrainer.compute_loss)
    return TrlReference


prepared_here: list[int] = []  # preparations of the data this process ran (data/cache.py)
_prepare_datasets, _load_or_prepare = orpo_dist.data.cache.prepare_datasets, orpo_dist.data.cache.load_or_prepare


def counting_prepare_datasets(*args, **kwargs):
    prepared_here.append(1)
    return _prepare_datasets(*args, **kwargs)


def strings_for_trl(data_args, tokenizer, training, log, prepares=True):
    """TRL's trainer tokenizes strings itself: the prepared pairs before tokenization."""
    data = _load_or_prepare(data_args, tokenizer, training, log, prepares)
    strings = _prepare_datasets(data_args, tokenizer, training.max_length, training.seed, log=lambda line: None,
                                max_prompt_length=training.max_prompt_length,
                                max_completion_length=training.max_completion_length)
    return dataclasses.replace(data, train=strings.train, eval=strings.eval)


orpo_dist.data.cache.prepare_datasets = counting_prepare_datasets
if os.environ.get("PROBE_REFERENCE") == "trl":
    orpo_dist.data.cache.load_or_prepare = strings_for_trl
if os.environ.get("PROBE_REFERENCE") == "trl":
    orpo_dist.orpo.trainer.OrpoTrainer = trl_reference()
else:
    orpo_dist.orpo.trainer.OrpoTrainer.compute_loss = _recording(orpo_dist.orpo.trainer.OrpoTrainer.compute_loss)


def _full_parameters(model):
    """Every parameter gathered whole (a no-op outside ZeRO-3); collective under ZeRO-3."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    import contextlib

    return contextlib.nullcontext()


def _fsdp_offload_policy() -> str | None:
    """FSDP2's offload policy as accelerate applied it (CPUOffloadPolicy or OffloadPolicy), or None."""
    from accelerate.state import AcceleratorState

    plugin = getattr(AcceleratorState(), "fsdp_plugin", None)
    return type(plugin.cpu_offload).__name__ if plugin is not None else None


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
            if hasattr(p, "ds_numel"):  # DeepSpeed ZeRO-3
                shards[name] = [p.ds_tensor.numel(), p.ds_numel]
            elif hasattr(p, "to_local"):  # FSDP2: a DTensor, this rank's rows of the parameter
                shards[name] = [p.to_local().numel(), p.numel()]
        with _full_parameters(model):
            # FSDP2's DTensors gathered whole (a collective, in the same order on every rank)
            checksums = {name: float((p.full_tensor() if hasattr(p, "full_tensor") else p).detach().double().sum())
                         for name, p in model.named_parameters()}
            with torch.no_grad():
                logits = model(torch.tensor(PROBE_INPUT)).logits[0, -1, :16].tolist()
        record = {
            "rank": rank,
            "world_size": args.world_size,
            "global_step": state.global_step,
            "micro_batches": micro_batches,
            "prepared_data": len(prepared_here),
            "trainer": trainer_class[0] if trainer_class else None,
            "trl_experimental": sorted(m for m in sys.modules if m.startswith("trl.experimental")),
            "checksums": checksums,
            "shards": shards,
            "engine": type(model).__name__ + ("/fsdp2" if any(hasattr(p, "to_local") for p in model.parameters())
                                              else ""),
            "fsdp_offload": _fsdp_offload_policy(),
            "logits": logits,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    crash = os.environ.get("PROBE_CRASH_AT")
    run(parse(sys.argv[1:]), extra_callbacks=[Probe(Path(os.environ["PROBE_DIR"]), int(crash) if crash else None)],
        on_trainer=lambda trainer: trainer_class.append(trainer.forward.name))

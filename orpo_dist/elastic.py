"""Resume a checkpoint on a different number of processes (elastic resume).

A requeued Slurm job may land on fewer or more nodes, and a run may be continued on another
machine. Two things must then carry over unchanged:

- the global batch (processes x per-device batch x gradient accumulation), so that the learning
  rate, the schedule and the data order mean what they meant: gradient accumulation (else the
  per-device batch) is changed to keep it, and the run says so. Accelerate hands process p batch
  p, p+W, ... of one seeded order, so W processes x accumulation A take the same pairs in each
  step as W' x A' when W*A == W'*A';
- the sharded state, as each engine allows (strategies.py): FSDP2's checkpoints are torch DCP
  shards, which load resharded onto any number of processes as they are; DeepSpeed refuses ZeRO
  shards of another world size, so they are converted once with DeepSpeed's own universal
  checkpoint tool (deepspeed.checkpoint.ds_to_universal) and loaded with `checkpoint.load_universal`.

The world size of a checkpoint is recorded in its COMPLETE marker (run_folder.mark_complete); its
engine is read from what it holds (run_folder.checkpoint_engine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .run_folder import DEEPSPEED_TAG_PREFIX, checkpoint_engine, checkpoint_layout
from .strategies import ENGINES, running_engine, with_engine

UNIVERSAL_SUFFIX = "_universal"
LATEST_UNIVERSAL = "latest_universal"  # DeepSpeed's name for the tag file of a universal checkpoint


@dataclass
class Change:
    saved_world: int
    world: int
    global_batch: int
    batch: int
    accumulation: int
    converted: bool


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def deepspeed_tag(checkpoint: Path) -> str | None:
    """The DeepSpeed tag (global_stepN) a checkpoint holds shards under, or None."""
    latest = checkpoint / "latest"
    if latest.is_file():
        return latest.read_text().strip()
    tags = sorted(p.name for p in checkpoint.glob(f"{DEEPSPEED_TAG_PREFIX}*") if not p.name.endswith(UNIVERSAL_SUFFIX))
    return tags[-1] if tags else None


def plan_resume(checkpoint: str | Path, training, log) -> Change | None:
    """Adapt `training` (the run's TrainingArguments) to resume `checkpoint` on this world size.
    None when nothing changes. Called before the trainer is built."""
    checkpoint = Path(checkpoint)
    saved = checkpoint_layout(checkpoint)
    world = world_size()
    check_engine(checkpoint, running_engine(training.deepspeed))
    if saved is None or saved["world_size"] == world:
        return None
    tag = deepspeed_tag(checkpoint) if ENGINES[checkpoint_engine(checkpoint)].universal_conversion else None
    global_batch = saved["world_size"] * saved["per_device_train_batch_size"] * saved["gradient_accumulation_steps"]
    batch = training.per_device_train_batch_size
    if global_batch % (world * batch) == 0:
        accumulation = global_batch // (world * batch)
    elif global_batch % world == 0:
        batch, accumulation = global_batch // world, 1
    else:
        raise UserError(f"{checkpoint} was trained with a global batch of {global_batch} pairs over "
                        f"{saved['world_size']} process(es); {world} processes cannot share it evenly. Resume on a "
                        f"number of processes that divides {global_batch}")
    before = (training.per_device_train_batch_size, training.gradient_accumulation_steps)
    training.per_device_train_batch_size, training.gradient_accumulation_steps = batch, accumulation
    if training.deepspeed:  # a DeepSpeed config given in the recipe (not by accelerate's config file)
        refresh_deepspeed_config(training)
    log(f"resuming a checkpoint of {saved['world_size']} process(es) on {world}: per-device batch x gradient "
        f"accumulation {before[0]} x {before[1]} -> {batch} x {accumulation}, keeping the global batch at "
        f"{global_batch}" + ("; DeepSpeed's shards are loaded as a universal checkpoint" if tag else ""))
    return Change(saved["world_size"], world, global_batch, batch, accumulation, bool(tag))


def check_engine(checkpoint: Path, engine: str) -> None:
    """A checkpoint's sharded state loads only on the engine that wrote it: refused in one line
    (naming the strategies that can resume it) before the Trainer fails on it with a traceback."""
    saved = checkpoint_engine(checkpoint)
    if saved is None or saved == engine:
        return
    raise UserError(f"{checkpoint} holds {ENGINES[saved].label} state and this run is on {ENGINES[engine].label}: "
                    f"resume it with a strategy on {ENGINES[saved].label}: `orpo-dist launch --strategy "
                    f"{'|'.join(with_engine(saved))} --num-processes N ... --resume` (any N)")


def refresh_deepspeed_config(training) -> None:
    """Fill the DeepSpeed config's "auto" fields again from the changed arguments (transformers
    fills them once, when the arguments are built), as Trainer does for auto_find_batch_size.
    (With accelerate's config file they are filled when the trainer is built, after this.)"""
    from accelerate.utils import DeepSpeedPlugin
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    config = training.deepspeed
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    config = json.loads(json.dumps(config))
    training.deepspeed = config
    training.hf_deepspeed_config = HfTrainerDeepSpeedConfig(config)
    training.hf_deepspeed_config.trainer_config_process(training)
    training.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=training.hf_deepspeed_config)


def load_as_universal(trainer) -> None:
    """Have DeepSpeed read the checkpoint's universal form: its engine is built from this config
    when training starts (accelerator.prepare), after the trainer is."""
    config = trainer.accelerator.state.deepspeed_plugin.deepspeed_config
    config.setdefault("checkpoint", {})["load_universal"] = True


def convert_to_universal(checkpoint: str | Path, log) -> None:
    """On the main process, once: DeepSpeed's converter writes CHECKPOINT/global_stepN_universal and
    CHECKPOINT/latest_universal (written last, so a crash mid-way leaves nothing that loads)."""
    checkpoint = Path(checkpoint)
    tag = deepspeed_tag(checkpoint)
    universal = checkpoint / f"{tag}{UNIVERSAL_SUFFIX}"
    if (checkpoint / LATEST_UNIVERSAL).is_file() and universal.is_dir():
        return
    log(f"converting {checkpoint.name}'s ZeRO shards to a universal checkpoint (DeepSpeed's ds_to_universal)")
    done = subprocess.run(
        [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(checkpoint / tag),
         "--output_folder", str(universal), "--num_extract_workers", "1", "--num_merge_workers", "1"],
        capture_output=True, text=True)
    if done.returncode != 0 or not (checkpoint / LATEST_UNIVERSAL).is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"DeepSpeed could not convert {checkpoint} to a universal checkpoint: "
                        + " / ".join(tail) + f". Resume it on {checkpoint_layout(checkpoint)['world_size']} "
                        "process(es) instead")

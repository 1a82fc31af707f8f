"""Trainer callbacks: metrics.jsonl (one line per logged step), a guard against NaN losses and
the checkpoint-and-stop on request (the run folder's stop protocol, orpo_dist/run_folder.py)."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from .run_folder import METRICS_FILE, STOP_FILE, clear_stop_markers, read_metrics

# The ORPO figures users watch; all logged keys are kept, these are checked for NaN/inf.
WATCHED = ("loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "rewards/rejected")


class MetricsJsonl(TrainerCallback):
    """Append every log event to OUTPUT_DIR/metrics.jsonl, from the main process only.

    On resume, lines logged after the checkpoint we restart from are dropped first, so the file
    reads as one continuous run whatever was killed in between.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None = None):
        self.path = Path(output_dir) / METRICS_FILE
        self.resume_step = resume_step

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path.parent) if r.get("step", 0) <= self.resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop at the first logged NaN/inf instead of training on garbage for hours.

    transformers' logging_nan_inf_filter hides a NaN `loss` behind the window's average, but the
    ORPO components (nll_loss, log_odds_ratio, rewards) are logged unfiltered.
    """

    def __init__(self):
        self.bad: tuple[int, str, float] | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in WATCHED:
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self.bad = (state.global_step, key, value)
                control.should_training_stop = True
                control.should_save = False  # never overwrite a good checkpoint with a NaN model
                return


class StopOnRequest(TrainerCallback):
    """Checkpoint and stop cleanly when OUTPUT_DIR/STOP appears (a person's `touch`, or a job
    scheduler that is about to pre-empt the run), or on SIGUSR1/SIGUSR2.

    Only the main process looks at the file; the decision is all-reduced every optimizer step so
    that every rank saves the same checkpoint and stops at the same step (a rank that stopped
    alone would leave the others hanging in their next collective).
    """

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / STOP_FILE
        self.stopped_at: int | None = None
        self.signalled = False
        # Schedulers also signal every process of a job before its time limit (Slurm's --signal):
        # SIGUSR1/SIGUSR2 ask for the same clean checkpoint-and-stop as the file does.
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.signalled = True

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            clear_stop_markers(self.path.parent)  # left by the run we are resuming

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.signalled or (state.is_world_process_zero and self.path.exists())
        if _any_rank(requested):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True


def _any_rank(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = "cpu"
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())

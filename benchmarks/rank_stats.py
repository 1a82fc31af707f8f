"""Per-process entry point for benchmarks: orpo-dist's trainer plus per-rank measurements.

Runs orpo_dist.train.run like `-m orpo_dist.train` would and writes STATS_DIR/rank{R}.json with
this process's peak resident memory (VmHWM), the peak so far at each phase's end (model and data
loaded, engine set up, first and last step: where the peak happened) and the mean time of the
optimizer steps after the first two (warm-up excluded).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from orpo_dist.recipe import parse
from orpo_dist.train import run


def status_gib(field: str = "VmHWM") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_rss_gib() -> float:
    return status_gib("VmHWM")


class Stats(TrainerCallback):
    def __init__(self, out: Path):
        self.out, self.marks, self.phases = out, [], {}

    def on_init_end(self, args, state, control, **kwargs):
        self.phases["loaded"] = peak_rss_gib()  # model, adapters and tokenised data built

    def on_train_begin(self, args, state, control, **kwargs):
        self.phases["engine"] = peak_rss_gib()  # accelerate/DeepSpeed wrapped the model

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())
        self.phases["step1" if len(self.marks) == 1 else "last_step"] = peak_rss_gib()

    def on_train_end(self, args, state, control, **kwargs):
        steps = [b - a for a, b in zip(self.marks[2:], self.marks[3:])]
        rank = int(os.environ.get("RANK", "0"))
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world_size": args.world_size, "peak_rss_gib": peak_rss_gib(),
            "peak_by_phase_gib": self.phases, "rss_at_end_gib": status_gib("VmRSS"),
            "step_s": sum(steps) / len(steps) if steps else float("nan"), "steps": state.global_step,
        }))


if __name__ == "__main__":
    run(parse(sys.argv[1:]), extra_callbacks=[Stats(Path(os.environ["STATS_DIR"]))])

"""Per-process entry point for benchmarks: orpo-dist's trainer plus per-rank measurements.

Runs orpo_dist.train.run like `-m orpo_dist.train` would and writes STATS_DIR/rank{R}.json with
this process's peak resident memory (VmHWM) and the mean time of the optimizer steps after the
first two (warm-up excluded).
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


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


class Stats(TrainerCallback):
    def __init__(self, out: Path):
        self.out, self.marks = out, []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())

    def on_train_end(self, args, state, control, **kwargs):
        steps = [b - a for a, b in zip(self.marks[2:], self.marks[3:])]
        rank = int(os.environ.get("RANK", "0"))
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world_size": args.world_size, "peak_rss_gib": peak_rss_gib(),
            "step_s": sum(steps) / len(steps) if steps else float("nan"), "steps": state.global_step,
        }))


if __name__ == "__main__":
    run(parse(sys.argv[1:]), extra_callbacks=[Stats(Path(os.environ["STATS_DIR"]))])

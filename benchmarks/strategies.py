"""Step time and peak memory per strategy, 1 vs 2 processes, measured in one run.

    python benchmarks/strategies.py [--steps 12] [--recipe orpo_dist/recipes/tiny.yaml] [overrides...]

Every configuration trains the same recipe with the same global batch (8 pairs per step: 1 process
x 8, or 2 processes x 4) through the same command builder as `orpo-dist launch`, on CPU
processes here (gloo; DeepSpeed's CPU accelerator) or GPUs where there are some.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from orpo_dist.launcher.command import Layout, build

REPO = Path(__file__).resolve().parent.parent
ENTRY = str(REPO / "benchmarks" / "rank_stats.py")
CONFIGS = [("single", 1), ("ddp", 2), ("zero2", 2), ("zero3", 2), ("zero3-offload", 2)]


def measure(strategy: str, procs: int, recipe: str, steps: int, global_batch: int, extra: list[str], port: int):
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats"
        overrides = ["--output_dir", f"{tmp}/run", "--max_steps", str(steps), "--save_strategy", "no",
                     "--logging_steps", str(steps), "--per_device_train_batch_size", str(global_batch // procs),
                     "--gradient_accumulation_steps", "1", *extra]
        command = build(strategy, Layout(procs, main_process_port=port), recipe, overrides, entry=(ENTRY,))
        done = subprocess.run(command.argv, env={**os.environ, **command.env, "STATS_DIR": str(stats)},
                              cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            return {"strategy": strategy, "procs": procs, "error": done.stderr[-800:]}
        ranks = [json.loads(p.read_text()) for p in sorted(stats.glob("rank*.json"))]
        return {"strategy": strategy, "procs": procs, "step_s": max(r["step_s"] for r in ranks),
                "peak_rss_gib_per_rank": max(r["peak_rss_gib"] for r in ranks),
                "peak_rss_gib_total": sum(r["peak_rss_gib"] for r in ranks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "orpo_dist/recipes/tiny.yaml"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--json", help="also write the rows here")
    args, extra = parser.parse_known_args()
    rows = []
    print(f"{'strategy':<15}{'procs':>6}{'s/step':>10}{'peak GiB/rank':>15}{'peak GiB total':>16}")
    for i, (strategy, procs) in enumerate(CONFIGS):
        row = measure(strategy, procs, args.recipe, args.steps, args.global_batch, extra, 29600 + i)
        rows.append(row)
        if "error" in row:
            print(f"{strategy:<15}{procs:>6}  failed: {row['error'].splitlines()[-1] if row['error'] else ''}")
        else:
            print(f"{strategy:<15}{procs:>6}{row['step_s']:>10.3f}{row['peak_rss_gib_per_rank']:>15.2f}"
                  f"{row['peak_rss_gib_total']:>16.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

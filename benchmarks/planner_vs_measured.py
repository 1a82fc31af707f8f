"""The planner's predicted peak memory per process vs the peak measured on real CPU runs.

    python benchmarks/planner_vs_measured.py [--steps 4] [--only tiny] [--strategy S] [--allocator both|returning|glibc]

Each run trains a recipe for a few steps through the same command builder as `orpo-dist launch`
(benchmarks/rank_stats.py records each rank's peak resident memory, VmHWM, and the phase it was
reached in) on rows long enough to fill max_length, as the planner assumes. The prediction is
`orpo-dist plan` for CPU processes (fp32, a per-process baseline included). Goal: within 20%.
Runs take orpo-dist's fast ORPO step (the default for these llama models) unless named "stock".

The planner counts tensors. On GPUs that is what CUDA's caching allocator holds; on CPU, glibc's
malloc raises its mmap threshold as tensors are freed (up to 32 MiB), after which freed tensors
stay in the heap, fragmented, and count in RSS. `returning` runs every process with
MALLOC_MMAP_THRESHOLD_=1 MiB, so that freed tensors go back to the OS and RSS follows the tensors;
`glibc` is the default allocator; `both` (the default) measures each run both ways.
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
from orpo_dist.planner import Hardware, plan_recipe
from orpo_dist.recipe import check_without_hardware

REPO = Path(__file__).resolve().parent.parent
ENTRY = str(REPO / "benchmarks" / "rank_stats.py")
TINY = str(REPO / "orpo_dist/recipes/tiny.yaml")
DEMO = str(REPO / "orpo_dist/recipes/smollm2-demo.yaml")
SMOL_FULL = ["--use_peft", "false"]
QLORA = ["--load_in_4bit", "true"]
STOCK = ["--orpo_step", "stock"]  # every other run takes the fast step (the default for llama models)
# (name, recipe, strategy, processes, overrides)
RUNS = [
    ("tiny full", TINY, "single", 1, []),
    ("tiny full", TINY, "ddp", 2, []),
    ("tiny full", TINY, "zero2", 2, []),
    ("tiny full", TINY, "zero3", 2, []),
    ("smollm2 full", DEMO, "single", 1, SMOL_FULL),
    ("smollm2 full stock", DEMO, "single", 1, SMOL_FULL + STOCK),
    ("smollm2 lora stock", DEMO, "single", 1, STOCK),
    ("smollm2 lora", DEMO, "single", 1, []),
    ("smollm2 qlora", DEMO, "single", 1, QLORA),
    ("smollm2 lora", DEMO, "zero3", 2, []),
    ("tiny full", TINY, "zero3-offload", 2, []),
    ("smollm2 lora", DEMO, "zero3-offload", 2, []),
    ("tiny full", TINY, "fsdp2", 2, []),
    ("smollm2 full", DEMO, "fsdp2", 2, SMOL_FULL),
    ("smollm2 lora", DEMO, "fsdp2", 2, []),
    ("smollm2 qlora", DEMO, "fsdp2", 2, QLORA),
    ("tiny full", TINY, "fsdp2-offload", 2, []),
    ("smollm2 lora", DEMO, "fsdp2-offload", 2, []),
]
# glibc's threshold fixed at 1 MiB: allocations above it are mmapped and unmapped when freed.
ALLOCATORS = {"returning": {"MALLOC_MMAP_THRESHOLD_": str(2**20)}, "glibc": {}}


def long_rows(path: Path, words: int) -> None:
    """Short prompts with answers longer than max_length: every sequence is cut to max_length."""
    filler = " ".join(["the quick brown fox jumps over the lazy dog"] * (words // 9 + 1))
    rows = [{"prompt": f"Tell story {i}.", "chosen": f"Story {i}: {filler}", "rejected": f"Tale {i}: {filler}"}
            for i in range(64)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def measure(recipe, strategy, procs, overrides, data, steps, port, allocator_env) -> tuple[float, str] | str:
    """(peak RSS of the highest rank in GiB, the phase it was reached in), or why the run failed."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats"
        args = ["--dataset_name", str(data), "--dataset_test_split", "none", "--eval_split_size", "0",
                "--output_dir", f"{tmp}/run", "--max_steps", str(steps), "--save_strategy", "no",
                "--logging_steps", str(steps), *overrides]
        command = build(strategy, Layout(procs, main_process_port=port), recipe, args, entry=(ENTRY,))
        done = subprocess.run(command.argv, cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, **command.env, **allocator_env, "STATS_DIR": str(stats)})
        if done.returncode != 0:
            return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:100]
        top = max((json.loads(p.read_text()) for p in stats.glob("rank*.json")), key=lambda r: r["peak_rss_gib"])
        phase = next((name for name, peak in top["peak_by_phase_gib"].items() if peak >= top["peak_rss_gib"] - 1e-3),
                     "end")  # after the last step (saving, evaluation)
        return top["peak_rss_gib"], phase


def predict(recipe, strategy, procs, overrides) -> float:
    values = check_without_hardware(recipe, overrides)
    hardware = Hardware(gpus_per_node=procs, nodes=1, gpu_mem_gib=20.0, device="cpu")
    plan, _ = plan_recipe(values, hardware)
    return plan.strategy(strategy).peak / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--only", help="run only the rows whose name contains this")
    parser.add_argument("--strategy", help="run only the rows of this strategy")
    parser.add_argument("--allocator", choices=("both", *ALLOCATORS), default="both")
    args = parser.parse_args()
    allocators = list(ALLOCATORS) if args.allocator == "both" else [args.allocator]
    header = f"{'run':<20}{'strategy':<15}{'procs':>6}{'predicted GiB':>15}"
    for name in allocators:
        header += f"{name + ' GiB':>16}{'ratio':>7}{'peak in':>10}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "long.jsonl"
        long_rows(data, words=400)
        print(header, flush=True)
        for i, (name, recipe, strategy, procs, overrides) in enumerate(RUNS):
            if (args.only and args.only not in name) or (args.strategy and args.strategy != strategy):
                continue
            predicted = predict(recipe, strategy, procs, overrides)
            line = f"{name:<20}{strategy:<15}{procs:>6}{predicted:>15.2f}"
            for allocator in allocators:
                measured = measure(recipe, strategy, procs, overrides, data, args.steps, 29700 + i,
                                   ALLOCATORS[allocator])
                if isinstance(measured, str):
                    line += f"  {measured}"
                else:
                    peak, phase = measured
                    line += f"{peak:>16.2f}{predicted / peak:>7.2f}{phase:>10}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

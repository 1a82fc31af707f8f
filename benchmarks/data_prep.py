"""Preparing a large dataset: time to the first training step and peak memory per rank, on a first
run (the node's main process prepares and caches; data/cache.py) and a re-run (every rank loads
the cache), with 1 and 2 processes.

    .venv/bin/python benchmarks/data_prep.py [--copies 87] [--processes 1 2] [--work /tmp/orpo-data-prep]

The data: ../shared/data/hh-rlhf-harmless-base repeated (87 copies of its 2,312 rows: about 200k
pairs, 191 MB of JSONL), each copy's first human turn numbered so that no two rows are the same;
written to --work, never into the repository. The run: the tiny recipe's model (the preparation
does not depend on it), max_length 1024, 1% held out, two steps. Each first run starts from an
empty cache of its own (HF_DATASETS_CACHE); its re-run uses that cache. Time to first step: from
the start of the command to the first line of metrics.jsonl. Peak memory: the largest resident
set of each training process, polled every 0.2 s (the Arrow files are memory-mapped: pages a
rank reads count in its RSS, and are shared between the ranks of a node).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
TURN = "\n\nHuman: "


def build_data(path: Path, copies: int) -> int:
    rows = [json.loads(line) for line in gzip.open(HH, "rt", encoding="utf-8")]
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(copies):
            for row in rows:
                mark = f"{TURN}({copy}) "
                f.write(json.dumps({k: v.replace(TURN, mark, 1) for k, v in row.items()}, ensure_ascii=False) + "\n")
    return copies * len(rows)


def recipe(work: Path, data: Path) -> Path:
    import yaml

    from orpo_dist.recipe_files import bundled_path

    values = yaml.safe_load(bundled_path("tiny").read_text())
    for key in ("max_train_samples", "max_eval_samples", "dataset_test_split"):
        values.pop(key, None)
    values.update(dataset_name=str(data), eval_split_size=0.01, max_length=1024, max_steps=2, logging_steps=1,
                  save_strategy="no")
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run(command: list[str], out: Path, cache: Path) -> tuple[float, list[int]]:
    """(seconds to the first metrics line, peak RSS in bytes of each training process)."""
    import os

    import psutil

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache)}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    first_step = None
    log = []
    while proc.poll() is None:
        root = psutil.Process(proc.pid)
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                line = " ".join(p.cmdline())
                rank = "orpo_dist.train" in line and "accelerate" not in line  # not the launcher
                if rank or (p.pid == proc.pid and "train" in command):
                    peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.Error:
                pass
        metrics = out / "metrics.jsonl"
        if first_step is None and metrics.is_file() and metrics.read_text().strip():
            first_step = time.perf_counter() - started
        time.sleep(0.2)
    log = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{log[-3000:]}")
    return first_step or float("nan"), sorted(peaks.values(), reverse=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--copies", type=int, default=87)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--work", default="/tmp/orpo-data-prep")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"hh-x{args.copies}.jsonl"
    if not data.is_file():
        rows = build_data(data, args.copies)
        print(f"wrote {rows} pairs to {data} ({data.stat().st_size / 1e6:.0f} MB)", flush=True)
    path = recipe(work, data)
    orpo = str(Path(sys.executable).with_name("orpo-dist"))
    print(f"{'processes':>9}  {'run':<9}  {'to first step':>13}  {'peak RSS per rank (GiB)':<24}", flush=True)
    for n in args.processes:
        cache = work / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        out = work / f"run-{n}"
        command = ([orpo, "train", "--config", str(path), "--output_dir", str(out)] if n == 1 else
                   [orpo, "launch", "--strategy", "ddp", "--num-processes", str(n), str(path), "--output_dir", str(out)])
        for label in ("first run", "re-run"):
            seconds, peaks = run(command, out, cache)
            ranks = ", ".join(f"{b / 2**30:.2f}" for b in peaks)
            print(f"{n:>9}  {label:<9}  {seconds:>11.1f} s  {ranks}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

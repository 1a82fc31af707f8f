"""Running `orpo-dist submit` jobs from a test and watching them (the Slurm tests' shared helpers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .helpers import REPO, TINY_RECIPE, train_logs

TINY = TINY_RECIPE


def job_state(env: dict, job: str) -> str:
    """The job's state: its accounting record (sacct) once it has one, else the queue's (squeue);
    "" while neither knows it."""
    def ask(*argv):
        return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=30).stdout.split()

    accounted = ask("sacct", "-n", "-X", "-P", "-o", "State", "-j", job)
    return accounted[0] if accounted else " ".join(ask("squeue", "-h", "-j", job, "-o", "%T"))


def read_until(proc, marker: str, timeout: float = 300) -> str:
    """The submit command's output up to the first line holding `marker` (the plan prints first)."""
    deadline, lines = time.time() + timeout, []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


def job_id(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("orpo-dist submit: job "):
            return line.split()[3]
    raise AssertionError(stdout)


def submit_in_background(slurm_env, out, options: list[str], overrides: list[str]) -> subprocess.Popen:
    """`orpo-dist submit --wait OPTIONS tiny.yaml OVERRIDES` (2 CPU nodes, ZeRO-3) beside the test."""
    return subprocess.Popen(
        [sys.executable, "-m", "orpo_dist", "submit", "--nodes", "2", "--gpus-per-node", "0", "--strategy", "zero3",
         "--wait", *options, str(TINY), "--output_dir", str(out), *overrides],
        cwd=REPO, env={**os.environ, **slurm_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_training(out, timeout: float = 300) -> None:
    """Until metrics.jsonl holds a training step."""
    deadline = time.time() + timeout
    while not train_logs_exist(out) and time.time() < deadline:
        time.sleep(1)
    assert train_logs_exist(out), "training never started"


def train_logs_exist(out) -> bool:
    try:
        return (out / "metrics.jsonl").is_file() and bool(train_logs(out))
    except ValueError:  # a line being written
        return False


def training_pids(job: str, node: str) -> list[int]:
    """Processes of Slurm job `job` on node `node` that run the training entry point."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if (f"SLURM_JOB_ID={job}".encode() in environ and f"SLURMD_NODENAME={node}".encode() in environ
                and b"orpo_dist.train" in cmdline):
            pids.append(int(proc.name))
    return pids

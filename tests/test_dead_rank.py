"""A rank killed with SIGKILL mid-run (as the out-of-memory killer does) ends the whole
`orpo-dist launch` job promptly, with one message naming the rank and the signal and no
traceback; `--resume` then continues from the last complete checkpoint and repeats the losses
the dead run had logged after it: shown on both sharding engines (ZeRO-3 and FSDP2, whose
per-rank state is the hard case; DDP's launcher path is the same and test_a_silent_rank's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import REPO, TINY_RECIPE, train_logs

pytestmark = pytest.mark.slow
END_WITHIN_S = 60
COMMON = ["--max_steps", "400", "--save_steps", "4", "--logging_steps", "1", "--report_to", "none",
          "--max_train_samples", "64", "--eval_strategy", "no"]


def launch(strategy, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "orpo_dist", "launch", "--strategy", strategy, "--num-processes", "2", "--force",
         str(TINY_RECIPE), "--output_dir", str(out), *COMMON, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def rank_pid(out: Path, rank: int) -> int:
    """The training process of `rank` in the run writing `out` (torchrun sets RANK in its environment)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(out).encode() in cmdline and b"orpo_dist.train" in cmdline and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no rank {rank} process for {out}")


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("strategy", ["zero3", "fsdp2"])
def test_a_killed_rank_ends_the_job_with_its_name_then_resume_repeats_the_losses(tmp_path, strategy):
    out = tmp_path / "run"
    proc = launch(strategy, out)
    try:
        wait_for(lambda: (out / "checkpoint-4" / "COMPLETE").is_file() and len(train_logs(out)) >= 6, 300,
                 "a complete checkpoint and two more steps")
        os.kill(rank_pid(out, 1), signal.SIGKILL)
        killed = time.time()
        stdout, stderr = proc.communicate(timeout=END_WITHIN_S + 30)
        ended_s = time.time() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"{strategy}: the job ended {ended_s:.1f} s after rank 1 was killed")
    assert ended_s < END_WITHIN_S
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr[-4000:]
    assert "rank 1 (local rank 1 on" in stderr and "was killed by SIGKILL" in stderr, stderr[-3000:]
    assert "out-of-memory killer" in stderr and "--resume" in stderr
    before = {r["step"]: r["loss"] for r in train_logs(out)}
    resumed_from = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "COMPLETE").is_file())

    stop_at = max(before) + 1
    again = launch(strategy, out, "--resume", "--max_steps", str(stop_at))
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-4000:]
    after = {r["step"]: r["loss"] for r in train_logs(out)}
    assert sorted(after) == list(range(1, stop_at + 1))
    repeated = [s for s in before if s > resumed_from]
    assert repeated  # the dead run had logged steps past its checkpoint
    for step in repeated:
        assert after[step] == pytest.approx(before[step], rel=1e-5), step


def test_a_silent_rank_ends_the_job_at_the_collective_timeout(tmp_path):
    """A rank that stops answering without closing its connections (a frozen process; to gloo
    the same as a cut link) is caught by the user's collective timeout (ddp_timeout)."""
    out = tmp_path / "run"
    timeout_s = 5
    proc = launch("ddp", out, "--ddp_timeout", str(timeout_s))
    try:
        wait_for(lambda: len(train_logs(out)) >= 3, 300, "training to start")
        os.kill(rank_pid(out, 1), signal.SIGSTOP)
        frozen = time.time()
        stdout, stderr = proc.communicate(timeout=timeout_s + END_WITHIN_S)
        ended_s = time.time() - frozen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"ddp_timeout {timeout_s} s: the job ended {ended_s:.1f} s after rank 1 froze")
    assert ended_s < timeout_s + END_WITHIN_S
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr[-4000:]
    assert "rank 0 lost contact with the other training processes" in stderr and "Timed out" in stderr
    assert "rank 0 (local rank 0 on" in stderr

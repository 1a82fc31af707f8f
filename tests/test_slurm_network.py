"""Two hosts, two addresses: a 2-node job whose nodes reach each other over a real network link
(scripts/local-cluster.sh puts each slurmd in its own network namespace), and what happens when
that link is cut mid-run.

A cut link is the failure no process notices by itself: no socket is reset, packets just stop.
Only the collective's timeout (the recipe's ddp_timeout) ends the wait, on both sides. Slurm has its
own trap here: the cut node's "task exited" message to srun is lost and never sent again, so srun
would hold the job until its time limit; srun --wait (`orpo-dist submit --task-exit-wait`) ends it.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from .slurm_jobs import job_id, job_state, read_until, submit_in_background, training_pids, wait_for_training
from .conftest import SLURM_CLUSTER

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
DDP_TIMEOUT = 10  # seconds
TASK_EXIT_WAIT = 20  # seconds (srun --wait)
MARGIN = 30  # seconds beyond the timeouts: the launcher's exit, submitit's result file, Slurm's KillWait, polls


def cluster(*args: str) -> str:
    return subprocess.run(["bash", str(SLURM_CLUSTER), *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def node_log(out, node: int) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((out / "submitit").glob(f"*_{node}_log.*"), reverse=True))  # .out, then .err


def test_cut_link_ends_the_job_within_the_timeout(slurm_cluster, tmp_path):
    out = tmp_path / "cut"
    n1, n2 = cluster("address", "n1"), cluster("address", "n2")
    proc = submit_in_background(slurm_cluster, out, ["--time", "15", "--task-exit-wait", str(TASK_EXIT_WAIT)],
                                ["--max_steps", "100000", "--save_steps", "5", "--ddp_timeout", str(DDP_TIMEOUT)])
    cut = None
    try:
        jid = job_id(read_until(proc, "orpo-dist submit: job "))
        wait_for_training(out)
        # Node 1 lives at its own address and reaches node 0 at node 0's: the main address it
        # resolved is really the other host's (through Slurm's NodeAddr: "n1" is not in DNS here).
        assert "node 1/2 (" in node_log(out, 1) and f"{n2} on eth0), start 1, main {n1}:" in node_log(out, 1)
        assert f"{n1} on eth0), start 1, main {n1}:" in node_log(out, 0)
        assert "GLOO_SOCKET_IFNAME=eth0" in node_log(out, 1)  # not loopback, which the hostname resolves to
        assert training_pids(jid, "n1") and training_pids(jid, "n2")
        deadline = time.time() + 120  # cut after the first checkpoint: the run then has something to lose
        while not list(out.glob("checkpoint-*/COMPLETE")) and time.time() < deadline:
            time.sleep(0.5)
        cluster("link", "n2", "down")
        cut = time.time()
        ended: dict[str, float] = {}
        limit = DDP_TIMEOUT + TASK_EXIT_WAIT + MARGIN
        while time.time() - cut < limit and len(ended) < 4:
            for node in ("n1", "n2"):
                if node not in ended and not training_pids(jid, node):
                    ended[node] = time.time() - cut
            if "submit" not in ended and proc.poll() is not None:
                ended["submit"] = time.time() - cut
            if "job" not in ended and job_state(slurm_cluster, jid) not in ("RUNNING", "PENDING", ""):
                ended["job"] = time.time() - cut
            time.sleep(0.5)
        print("after the cut: " + ", ".join(f"{what} ended after {seconds:.1f}s" for what, seconds in ended.items()))
        assert {"n1", "n2"} <= set(ended), f"training still running {limit}s after the cut: {ended}"
        assert ended["n1"] < DDP_TIMEOUT + MARGIN and ended["n2"] < DDP_TIMEOUT + MARGIN, ended
        # Neither side ended before its collective timed out: it was the timeout, not a reset.
        assert min(ended["n1"], ended["n2"]) >= DDP_TIMEOUT - 1, ended
        assert "submit" in ended, f"orpo-dist submit --wait still waiting {limit}s after the cut"
        assert "job" in ended, f"Slurm job {jid} still {job_state(slurm_cluster, jid)} {limit}s after the cut"
        assert job_state(slurm_cluster, jid) == "FAILED"  # with the link still cut
    finally:
        if cut is not None:
            cluster("link", "n2", "up")
        proc.kill()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # The user's line says what happened: nobody died, contact was lost, the timeout ended it.
    assert "lost contact with the other training processes" in stderr and "Timed out" in stderr, stderr[-3000:]
    assert "No process on this machine died" in stderr and "--resume" in stderr, stderr[-3000:]
    # Node 1's rank said the same on its own side (the tail of its log says what it said instead).
    assert "lost contact" in node_log(out, 1), node_log(out, 1)[-4000:]
    assert any(out.glob("checkpoint-*/COMPLETE")), "no complete checkpoint kept to resume from"

    # With the link back, Slurm sees node 2 again, the job leaves the queue and the nodes are usable.
    deadline = time.time() + 120
    env = {**os.environ, **slurm_cluster}
    while time.time() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", jid], capture_output=True, text=True, env=env, timeout=30)
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, env=env,
                                timeout=30).stdout.split()
        if not queued.stdout.strip() and all(s in ("idle", "mix", "alloc") for s in states[1::2]):
            print(f"after the link came back: job {jid} left the queue, nodes usable, in "
                  f"{time.time() + 120 - deadline:.1f}s")
            break
        time.sleep(1)
    else:
        pytest.fail(f"after the link came back: job {jid} still queued ({queued.stdout.strip()}) or nodes not "
                    f"usable ({states})")

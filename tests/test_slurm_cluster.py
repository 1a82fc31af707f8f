"""The local Slurm cluster itself (scripts/local-cluster.sh): two nodes, accounting, requeue,
pre-emption, cancel, and submitit on top. Needs root on Debian; scripts/test.sh starts the cluster
first, and the fixture below starts it when it is down (and leaves it running).

Every wait has a deadline, and an alarm fails any test of this file that runs past TEST_LIMIT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .helpers import REPO
from .slurm_jobs import job_state

pytestmark = pytest.mark.slurm
CLUSTER = REPO / "scripts" / "local-cluster.sh"
TEST_LIMIT = 300  # seconds per test
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED"}




@pytest.fixture(autouse=True)
def _time_limit():
    """No test here may hang: SIGALRM raises in the test after TEST_LIMIT seconds."""
    def expire(signum, frame):
        raise TimeoutError(f"test ran past {TEST_LIMIT}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def slurm(env: dict, *args: str, timeout: float = 60) -> str:
    """Run a Slurm client command against the local cluster; its stdout."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}): {result.stderr}"
    return result.stdout


def sbatch(env: dict, *args: str) -> str:
    return slurm(env, "sbatch", "--parsable", *args).strip().split(";")[0]


def poll(what: str, check, timeout: float, interval: float = 0.5):
    """check() until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


def final_state(env: dict, job: str, timeout: float = 120) -> str:
    """Wait for sacct to record a final state (it lags the job by a second or two)."""
    def done():
        state = job_state(env, job)
        return state if state in FINAL else ""

    return poll(f"job {job} reaching a final state in sacct", done, timeout)


def in_queue(env: dict, job: str) -> bool:
    return bool(slurm(env, "squeue", "-h", "-j", job, "-o", "%i").strip())


def describe(env: dict, *jobs: str) -> str:
    """What Slurm says about these jobs, for a failure message."""
    parts = []
    for job in jobs:
        result = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30,
                                env={**os.environ, **env})
        parts.append(result.stdout or result.stderr)
    queue = subprocess.run(["squeue", "-a", "-o", "%i %P %T %r %N"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, **env})
    return "\n".join(parts + [queue.stdout])


def test_status_reports_every_daemon_up(slurm_cluster):
    result = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for daemon in ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd-n1", "slurmd-n2"):
        assert f"{daemon}: up" in result.stdout
    nodes = slurm(slurm_cluster, "sinfo", "-h", "-N", "-p", "debug", "-o", "%N %t")
    assert sorted(line.split()[0] for line in nodes.splitlines()) == ["n1", "n2"]


def test_two_node_batch_job_runs_on_both_nodes_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    job = sbatch(slurm_cluster, "-N2", "--ntasks-per-node=1", "-t", "5", "-o", str(out),
                 "--wrap", 'srun bash -c "echo node=\\$SLURMD_NODENAME id=\\$SLURM_NODEID"')
    assert final_state(slurm_cluster, job) == "COMPLETED", out.read_text() if out.exists() else "(no output)"
    lines = sorted(line for line in out.read_text().splitlines() if line.startswith("node="))
    assert lines == ["node=n1 id=0", "node=n2 id=1"]
    # Accounting knows both nodes and the srun step (its records can trail the state by a moment:
    # one read gave NodeList=n1 for this 2-node job just after COMPLETED).
    expected = {f"{job}|2|n[1-2]|COMPLETED|0:0", f"{job}.0|2|n[1-2]|COMPLETED|0:0"}

    def accounted():
        rows = slurm(slurm_cluster, "sacct", "-j", job, "-n", "-P", "-o", "JobID,NNodes,NodeList,State,ExitCode")
        return expected <= set(rows.split())

    poll(f"sacct records of job {job}", accounted, 30)


def test_srun_spans_both_nodes(slurm_cluster):
    out = slurm(slurm_cluster, "srun", "-N2", "-t", "2", "bash", "-c", "echo $SLURMD_NODENAME $SLURM_PROCID",
                timeout=120)
    assert sorted(out.splitlines()) == ["n1 0", "n2 1"]


def test_each_node_has_its_own_network_namespace_and_address(slurm_cluster):
    """Two hosts, two addresses: a task runs in its node's network namespace, its eth0 holds the
    address `local-cluster.sh address` names, and the way from node 1 to node 0's address is that
    eth0 (what launcher/network.py hands gloo), not loopback."""
    address = {node: subprocess.run(["bash", str(CLUSTER), "address", node], capture_output=True, text=True,
                                    timeout=30, check=True).stdout.strip() for node in ("n1", "n2")}
    assert address["n1"] != address["n2"]
    towards_n1 = (f"{sys.executable} -c 'from orpo_dist.launcher.network import interface_towards as i; "
                  f"print(*i(\"{address['n1']}\"))'")
    script = ("echo $SLURMD_NODENAME $(readlink /proc/self/ns/net) "
              "$(ip -o -4 addr show dev eth0 | awk '{print $4}') $(" + towards_n1 + ")")
    out = slurm(slurm_cluster, "srun", "-N2", "-t", "2", "bash", "-c", script, timeout=120)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert sorted(rows) == ["n1", "n2"], out
    here = os.readlink("/proc/self/ns/net")
    assert len({rows["n1"][0], rows["n2"][0], here}) == 3, f"namespaces not separate: {out}"
    for node in ("n1", "n2"):
        assert rows[node][1] == address[node] + "/24", out
    # Both name eth0: n2 reaches n1 from its own address; n1's own address is on its eth0 too,
    # which is where gloo must bind for n2 to reach it.
    for node in ("n1", "n2"):
        assert rows[node][2:] == ["eth0", address[node]], out


def test_submitit_two_node_job_returns_both_node_ids(slurm_cluster, tmp_path, monkeypatch):
    import submitit

    for key, value in slurm_cluster.items():
        monkeypatch.setenv(key, value)  # submitit's sbatch/sacct calls inherit the environment
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", nodes=2, tasks_per_node=1, timeout_min=5)

    def node_id():  # defined here so that cloudpickle ships it by value (no import of this module)
        return os.environ["SLURM_NODEID"], os.environ["SLURMD_NODENAME"]

    job = executor.submit(node_id)
    try:
        poll(f"submitit job {job.job_id}", job.done, 120)
        assert sorted(job.results()) == [("0", "n1"), ("1", "n2")]
        assert final_state(slurm_cluster, job.job_id) == "COMPLETED"
    finally:
        if not job.done():
            job.cancel(check=False)


def test_scancel_ends_a_sleeping_job_promptly(slurm_cluster, tmp_path):
    job = sbatch(slurm_cluster, "-t", "10", "-o", str(tmp_path / "sleep.out"), "--wrap", "sleep 300")
    poll(f"job {job} running", lambda: job_state(slurm_cluster, job) == "RUNNING", 60)
    started = time.monotonic()
    slurm(slurm_cluster, "scancel", job)
    poll(f"cancelled job {job} leaving the queue", lambda: not in_queue(slurm_cluster, job), 30, 0.2)
    assert time.monotonic() - started < 30
    assert final_state(slurm_cluster, job, 60) == "CANCELLED"


def test_scontrol_requeue_runs_the_job_again(slurm_cluster, tmp_path):
    """A requeued job starts again within ~15 s here (cred_expire=10, sched_interval=5), restart count 1."""
    out = tmp_path / "requeue.out"
    script = 'echo "restart=${SLURM_RESTART_COUNT:-0}"; [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || sleep 300'
    job = sbatch(slurm_cluster, "--requeue", "--open-mode=append", "-t", "10", "-o", str(out), "--wrap", script)
    try:
        poll("first run", lambda: out.exists() and "restart=0" in out.read_text(), 60, 0.2)
        requeued = time.monotonic()
        slurm(slurm_cluster, "scontrol", "requeue", job)
        poll("second run after scontrol requeue", lambda: "restart=1" in out.read_text(), 90, 0.2)
        assert time.monotonic() - requeued < 60
        assert final_state(slurm_cluster, job) == "COMPLETED"
    finally:
        subprocess.run(["scancel", job], env={**os.environ, **slurm_cluster}, timeout=30, capture_output=True)


def test_urgent_job_preempts_a_submitit_job_which_requeues(slurm_cluster, tmp_path, monkeypatch):
    """An `urgent` job takes both nodes; the debug job gets USR2 at once, requeues, finishes later."""
    import submitit

    for key, value in slurm_cluster.items():
        monkeypatch.setenv(key, value)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    # 2 CPUs per task = whole nodes: the urgent job below can only run by pre-empting this one.
    # timeout_min > 10: submitit counts a signal within min(80%, limit - 10 min) of the limit as a
    # time-out (and any signal at all when the limit is 10 min or less), not as a pre-emption.
    executor.update_parameters(slurm_partition="debug", nodes=2, tasks_per_node=1, cpus_per_task=2,
                               timeout_min=30)

    marks = tmp_path / "marks"
    marks.mkdir()

    class Preemptible:  # defined here so that cloudpickle ships it by value
        """Checkpointable: sleeps on its first run, returns its restart count on the next.

        Each task marks its start: submitit installs its signal handlers just before calling us, so a
        mark from every task means a pre-emption signal now reaches a handler. (Sent earlier, USR2's
        default action kills one task while the other sleeps on through the 120 s grace time.)
        """

        def __call__(self):
            restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
            (marks / f"task{os.environ['SLURM_PROCID']}.run{restarts}").touch()
            if restarts == 0:
                time.sleep(300)
            return restarts

        def checkpoint(self, *args, **kwargs):
            return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    job = executor.submit(Preemptible())
    urgent = None
    try:
        poll(f"both tasks of debug job {job.job_id} running",
             lambda: {p.name for p in marks.iterdir()} == {"task0.run0", "task1.run0"}, 90)
        urgent = sbatch(slurm_cluster, "-p", "urgent", "-N2", "-c2", "-t", "2", "-o", str(tmp_path / "urgent.out"),
                        "--wrap", "sleep 3")
        assert final_state(slurm_cluster, urgent, 90) == "COMPLETED", describe(slurm_cluster, job.job_id, urgent)
        poll(f"submitit job {job.job_id} after its requeue", job.done, 90)
        assert job.results() == [1, 1]
        log = (tmp_path / "submitit" / f"{job.job_id}_0_log.err").read_text()
        assert "Caught signal SIGUSR2" in log and "preempted" in log
    finally:
        if not job.done():
            job.cancel(check=False)
        if urgent:
            subprocess.run(["scancel", urgent], env={**os.environ, **slurm_cluster}, timeout=30, capture_output=True)

"""`orpo-dist submit` and orpo_dist/configs/slurm/orpo.sbatch on a real Slurm cluster
(scripts/local-cluster.sh).

Two slurmd "nodes" on this machine, ZeRO-3 over CPU processes (one per node). The cluster is
started by scripts/test.sh (CI) or by the fixture below.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from .helpers import REPO, SECRETS, files_holding, run_cli, train_logs
from .slurm_jobs import TINY, job_id, job_state, read_until, submit_in_background, training_pids, wait_for_training

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_env(slurm_cluster):
    return slurm_cluster  # the running local cluster's client environment (tests/conftest.py)


def submit(slurm_env, out, options, overrides, timeout=900, strategy="zero3"):
    """orpo-dist submit OPTIONS tiny.yaml --output_dir OUT OVERRIDES (2 CPU nodes, ZeRO-3 unless said)."""
    return run_cli("submit", "--nodes", "2", "--gpus-per-node", "0", "--strategy", strategy, *options, TINY,
                   "--output_dir", out, *overrides, timeout=timeout, env=slurm_env)


def test_two_node_fsdp2_job_completes(slurm_env, tmp_path):
    """FSDP2 over two Slurm nodes through submitit (ZeRO-3 takes the other Slurm tests' jobs)."""
    out = tmp_path / "run"
    # Tokens in the submitting environment reach the job (sbatch exports it) but no file it writes.
    result = submit({**slurm_env, **SECRETS}, out, ["--time", "15", "--wait"],
                    ["--max_steps", "8", "--save_strategy", "no"], strategy="fsdp2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (out / "submitit").is_dir() and any((out / "submitit").rglob("*.sh"))  # the sbatch script
    assert not files_holding(SECRETS.values(), out)  # model, logs, submitit's script and pickles
    assert "node 0 (" in result.stdout and "node 1 (" in result.stdout  # both nodes took part
    assert "final metrics" in result.stdout
    assert (out / "model.safetensors").is_file() and len(train_logs(out)) == 4
    assert json.loads((out / "versions.json").read_text())["world_size"] == 2


def _scontrol(slurm_env, *args):
    return subprocess.run(["scontrol", *args], env={**os.environ, **slurm_env}, capture_output=True, text=True,
                          timeout=30, check=True).stdout


def _seconds(slurm_time: str) -> int:
    """Slurm's [D-]HH:MM:SS (or MM:SS) as seconds."""
    days, _, clock = slurm_time.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = 60 * seconds + int(part)
    return seconds + 86400 * int(days or 0)


def test_time_limit_checkpoints_requeues_and_resumes(slurm_env, tmp_path):
    """A job whose time limit runs out mid-run: Slurm's warning signal, a checkpoint, a requeue, a
    resume. To be independent of this machine's speed, the limit is cut (scontrol) once training
    is under way, to the first whole minute that puts the warning signal (45 s before the limit)
    10-70 s ahead, and restored after the checkpoint. 150 steps last over two minutes here (about
    1 step/s), so the signal always lands mid-run."""
    out = tmp_path / "requeued"
    proc = submit_in_background(slurm_env, out, ["--time", "20", "--signal-delay", "45"],
                                ["--max_steps", "150", "--save_steps", "1000", "--logging_steps", "10"])
    stdout = stderr = ""
    try:
        jid = job_id(read_until(proc, "orpo-dist submit: job "))
        wait_for_training(out)
        info = _scontrol(slurm_env, "show", "job", jid)
        run_time = _seconds(next(t.split("=", 1)[1] for t in info.split() if t.startswith("RunTime=")))
        minutes = -(-(run_time + 10 + 45) // 60)  # ceil
        _scontrol(slurm_env, "update", f"JobId={jid}", f"TimeLimit={minutes}")
        deadline = time.time() + 180
        while not (out / "STOPPED").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(1)
        if not (out / "STOPPED").exists():
            proc.kill()
            stdout, stderr = proc.communicate(timeout=60)
        assert (out / "STOPPED").exists(), ("no checkpoint-and-stop before the time limit (last step "
                                            f"{train_logs(out)[-1]['step']})\n" + stdout[-2000:] + stderr[-2000:])
        _scontrol(slurm_env, "update", f"JobId={jid}", "TimeLimit=20")
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "started 2 time(s)" in stdout  # requeued once, then finished
    steps = [r["step"] for r in train_logs(out)]
    assert steps == list(range(10, 151, 10))  # one continuous run: resumed, never restarted
    assert (out / "model.safetensors").is_file() and not (out / "STOPPED").exists()
    node0 = "".join(p.read_text() for p in (out / "submitit").glob("*_0_log.out"))
    assert "start 2" in node0 and "resuming from" in node0


def test_scancel_gives_a_clean_failure(slurm_env, tmp_path):
    out = tmp_path / "cancelled"
    proc = submit_in_background(slurm_env, out, ["--time", "15"], ["--max_steps", "100000"])
    try:
        jid = job_id(read_until(proc, "RUNNING"))
        subprocess.run(["scancel", jid], check=True, env={**os.environ, **slurm_env}, timeout=30)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 2
    assert "CANCELLED" in stderr and "Traceback" not in stderr and "--resume" in stderr


def test_a_node_whose_training_dies_ends_the_job_promptly(slurm_env, tmp_path):
    """Node 2's training killed (as the OOM killer would): the job fails within two minutes with a
    clean message, and node 1 is not left training alone. (Over gloo node 1 sees the closed socket
    itself; the srun --kill-on-bad-exit that submit adds is what ends it where NCCL would not.)"""
    out = tmp_path / "node-dies"
    proc = submit_in_background(slurm_env, out, ["--time", "15"], ["--max_steps", "100000"])
    try:
        jid = job_id(read_until(proc, "orpo-dist submit: job "))
        wait_for_training(out)
        victims = training_pids(jid, "n2")
        assert victims, "no training process found on n2"
        killed = time.time()
        for pid in victims:
            os.kill(pid, 9)
        stdout, stderr = proc.communicate(timeout=240)
        ended = time.time() - killed
    finally:
        proc.kill()
    print(f"node 2's training killed: submit --wait ended {ended:.1f} s later")
    assert proc.returncode == 2, stdout[-2000:] + stderr[-3000:]
    assert ended < 120, f"the job took {ended:.0f}s to end after node 2 died"
    assert "FAILED" in stderr and "Traceback" not in stderr, stderr[-3000:]
    script = next((out / "submitit").glob("*_submission.sh")).read_text()
    assert "srun" in script and "--kill-on-bad-exit=1" in script


def test_plain_sbatch_script_runs_the_same_job(slurm_env, tmp_path):
    out = tmp_path / "sbatch"
    env = {**os.environ, **slurm_env, "STRATEGY": "zero3", "GPUS_PER_NODE": "1"}
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--time=15", f"--output={tmp_path}/sbatch-%j.out",
         str(REPO / "orpo_dist" / "configs" / "slurm" / "orpo.sbatch"), str(TINY), "--output_dir", str(out),
         "--max_steps", "6", "--save_strategy", "no"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    # Polled here, not `sbatch --wait`: that looks at 2, 10 and then every 32 s (about 20 s lost).
    jid, deadline, state = submitted.stdout.strip().split(";")[0], time.time() + 900, ""
    while time.time() < deadline and (state := job_state(slurm_env, jid)) in ("", "PENDING", "RUNNING", "CONFIGURING",
                                                                              "COMPLETING"):
        time.sleep(1)
    log = "".join(p.read_text() for p in tmp_path.glob("sbatch-*.out"))
    assert state == "COMPLETED", state + "\n" + log[-4000:]
    assert (out / "model.safetensors").is_file() and len(train_logs(out)) == 3
    assert json.loads((out / "versions.json").read_text())["world_size"] == 2
    # Each node ran the submitit job's own code (job.OrpoJob), as `orpo-dist submit`'s nodes do.
    job = re.search(r"orpo.sbatch: job (\d+) start 1: 2 node\(s\) x 1 process\(es\), zero3", log)
    assert job, log[-4000:]
    for node in (0, 1):
        assert f"orpo-dist job {job.group(1)}: node {node}/2 " in log, log[-4000:]


@pytest.mark.parametrize("args,message", [
    (["--partition", "nope"], "unknown partition"),
    (["--nodes", "0"], "at least 1"),
    (["--nodes", "3"], "has 2 node"),
    (["--gpus-per-node", "4"], "GPU(s) each"),
])
def test_bad_requests_are_refused_before_submission(slurm_env, tmp_path, capsys, monkeypatch, args, message):
    """In this process (the CLI's own entry point; a subprocess each would mostly import)."""
    from orpo_dist.cli import main

    for name, value in slurm_env.items():
        monkeypatch.setenv(name, value)
    status = main(["submit", "--strategy", "zero3", "--gpus-per-node", "0", "--nodes", "2", *args, str(TINY),
                   "--output_dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "submitit").exists()  # nothing was submitted


def test_a_recipe_value_the_nodes_would_refuse_is_refused_on_the_login_node(slurm_env, tmp_path, capsys,
                                                                            monkeypatch):
    """The recipe's checks run where the job is submitted (recipe_checks.py, shared with training),
    not first on the nodes."""
    from orpo_dist.cli import main

    for name, value in slurm_env.items():
        monkeypatch.setenv(name, value)
    status = main(["submit", "--gpus-per-node", "0", "--nodes", "2", str(TINY), "--output_dir", str(tmp_path / "x"),
                   "--eval_split_size", "1.5"])
    err = capsys.readouterr().err
    assert status == 2 and "eval_split_size must be in [0, 1)" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_bad_recipe_and_missing_slurm_are_refused(slurm_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\noutput_dir: /tmp/x\nbeta_: 1\n")
    result = run_cli("submit", "--nodes", "1", "--gpus-per-node", "0", bad, timeout=120, env=slurm_env)
    assert result.returncode == 2 and "beta_" in result.stderr
    no_slurm = run_cli("submit", "--nodes", "1", "--gpus-per-node", "0", TINY, "--output_dir", tmp_path / "y",
                       timeout=120, env={"SLURM_CONF": str(tmp_path / "missing.conf")})
    assert no_slurm.returncode == 2 and "no Slurm reachable" in no_slurm.stderr


REFUSALS = [
    # (case, submit options, Slurm's own words)
    ("an account that does not exist", ["--account", "no-such-account"], "Invalid account"),
    ("a time limit beyond the partition's", ["--partition", "short", "--time", "2:00:00"],
     "Requested time limit is invalid"),
    ("a QOS that does not exist", ["--qos", "no-such-qos"], "Invalid qos specification"),
    ("a node feature no node has", ["--constraint", "no-such-feature"], "Invalid feature specification"),
]


@pytest.mark.parametrize("case, options, words", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_a_job_slurm_refuses_is_one_line_and_leaves_nothing_behind(slurm_env, tmp_path, capsys, monkeypatch,
                                                                    case, options, words):
    """sbatch's refusal in Slurm's own words, in one line; the output folder as it was before
    (here: an empty one the user made), nothing of the attempt left in it (no job files, no claim)."""
    from .helpers import check_refusal, run_case

    for key, value in slurm_env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    out.mkdir()
    status, _, err = run_case(["submit", "--nodes", "1", "--gpus-per-node", "0", "--strategy", "single", *options,
                               TINY, "--output_dir", out], capsys)
    check_refusal(status, err, ["Slurm refused the job: sbatch: error:", words, "Nothing was submitted"])
    assert sorted(p.name for p in out.iterdir()) == []
    fresh = tmp_path / "fresh"
    status, _, err = run_case(["submit", "--nodes", "1", "--gpus-per-node", "0", "--strategy", "single", *options,
                               TINY, "--output_dir", fresh], capsys)
    assert status == 2 and not fresh.exists()  # a folder made for the attempt is gone with it


def test_ctrl_c_on_submit_wait_cancels_the_job_in_one_line(slurm_env, tmp_path):
    from .test_user_mistakes import interrupt_once_checkpointed

    out = tmp_path / "run"
    status, err, seconds = interrupt_once_checkpointed(
        ["submit", "--nodes", "1", "--gpus-per-node", "0", "--strategy", "single", "--wait", TINY,
         "--output_dir", out, "--max_steps", "500", "--save_steps", "3"], out, env=slurm_env)
    said = [line for line in err.splitlines() if "interrupted" in line]
    print(f"Ctrl-C on submit --wait: exit {status} after {seconds:.1f} s: {said}")
    assert status == 130 and "Traceback" not in err and ": error:" not in err, err[-3000:]
    assert len(said) == 1 and said[0].startswith("orpo-dist submit: interrupted: job ") and "was cancelled" in said[0]
    assert "The last complete checkpoint is" in said[0] and "--resume`" in said[0]
    job = said[0].split("job ")[1].split()[0]
    state = subprocess.run(["sacct", "-n", "-X", "-j", job, "-o", "State"], env={**os.environ, **slurm_env},
                           capture_output=True, text=True, timeout=30).stdout.strip()
    assert state.startswith("CANCELLED"), state

"""`orpo-dist submit` before anything is submitted, against a stand-in `sinfo` (no cluster needed):
GPUs per node default to what the partition's nodes report, the flag overrides, the checks hold.
The real-cluster tests are tests/test_slurm_submit.py."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from orpo_dist.errors import UserError
from orpo_dist.launcher.slurm import cli as submit_cli
from orpo_dist.launcher.slurm.preflight import check

from .helpers import TINY_RECIPE

# sinfo -h -o "%P|%D|%G": a default CPU partition and a GPU one
SINFO = "debug*|2|(null)\ngpu|3|gpu:a100:4(S:0-1)\n"


def fake_slurm(bin_dir, leave_out=()):
    """Stand-ins of every Slurm command a submission needs (sinfo answers SINFO), but `leave_out`;
    the returned PATH holds them and the system's own folders, less any real Slurm."""
    from orpo_dist.launcher.slurm.preflight import NEEDED_COMMANDS

    bin_dir.mkdir(exist_ok=True)
    for name in NEEDED_COMMANDS:
        if name not in leave_out:
            (bin_dir / name).write_text(f"#!/bin/sh\nprintf '{SINFO}'\n" if name == "sinfo" else "#!/bin/sh\nexit 0\n")
            (bin_dir / name).chmod(0o755)
    others = [d for d in os.environ["PATH"].split(os.pathsep)
              if d and not any(os.path.exists(os.path.join(d, n)) for n in NEEDED_COMMANDS)]
    return os.pathsep.join([str(bin_dir), *others])


@pytest.fixture
def fake_sinfo(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_slurm(tmp_path / "bin"))


@pytest.mark.parametrize("missing", [("srun",), ("squeue", "scancel"), ("sbatch",)])
def test_a_login_node_without_every_slurm_command_is_told_which(tmp_path, monkeypatch, capsys, missing):
    from .helpers import check_refusal, run_case

    monkeypatch.setenv("PATH", fake_slurm(tmp_path / "bin", leave_out=missing))
    status, _, err = run_case(["submit", "--strategy", "zero3", "tiny", "--output_dir", tmp_path / "run"], capsys)
    check_refusal(status, err, ["Slurm is only partly on PATH", *(f"`{m}`" for m in missing), "module load slurm"])
    assert not (tmp_path / "run").exists()


def test_gpus_per_node_default_to_the_partitions(fake_sinfo):
    assert check(None, 2, None) == ("debug", 0)
    assert check("gpu", 3, None) == ("gpu", 4)
    assert check("gpu", 1, 2) == ("gpu", 2)  # the flag overrides
    for args, message in [(("gpu", 1, 8), r"have 4 GPU\(s\) each"), (("debug", 3, None), "has 2 node"),
                          (("nope", 1, None), "unknown partition"), (("gpu", 1, -1), "cannot be negative"),
                          (("gpu", 0, None), "at least 1")]:
        with pytest.raises(UserError, match=message):
            check(*args)


def test_submit_asks_the_partition_and_submits_what_it_reports(fake_sinfo, tmp_path, monkeypatch, capsys):
    submitted = {}

    def fake_submit(args, strategy, overrides, output_dir, timeout_min, partition):
        submitted.update(gpus=args.gpus_per_node, strategy=strategy, partition=partition, recipe=args.recipe)
        paths = types.SimpleNamespace(stdout="out.log", stderr="err.log")
        return types.SimpleNamespace(job_id="42", paths=paths)

    monkeypatch.setattr(submit_cli, "submit", fake_submit)
    out = tmp_path / "run"
    assert submit_cli.main(["--partition", "gpu", "--strategy", "zero3", "tiny", "--output_dir", str(out)]) == 0
    assert submitted["gpus"] == 4 and submitted["partition"] == "gpu" and submitted["recipe"].endswith("tiny.yaml")
    printed = capsys.readouterr().out
    assert "4 GPU(s) per node, as the nodes of partition gpu report" in printed and "job 42" in printed
    assert submit_cli.main(["--strategy", "zero3", "tiny", "--output_dir", str(out)]) == 0  # default partition
    assert (submitted["gpus"], submitted["partition"]) == (0, "debug")  # CPU nodes, not 8
    assert submit_cli.main(["--partition", "gpu", "--gpus-per-node", "2", "--strategy", "zero3", "tiny",
                            "--output_dir", str(out)]) == 0
    assert submitted["gpus"] == 2


def test_srun_waits_a_bounded_time_for_a_node_whose_exit_was_lost(fake_sinfo, tmp_path, monkeypatch):
    """srun --wait (TASK_EXIT_WAIT_S) by default, the same number in orpo.sbatch; 0 (wait forever)
    for a recipe that pushes to the Hub, where rank 0 uploads alone after the other nodes left."""
    waits = []

    def fake_submit(args, strategy, overrides, output_dir, timeout_min, partition):
        waits.append(args.task_exit_wait)
        return types.SimpleNamespace(job_id="42", paths=types.SimpleNamespace(stdout="o", stderr="e"))

    monkeypatch.setattr(submit_cli, "submit", fake_submit)
    base = ["--strategy", "zero3", "tiny", "--output_dir", str(tmp_path / "run")]
    assert submit_cli.main(base) == 0
    assert submit_cli.main(["--task-exit-wait", "30", *base]) == 0
    assert submit_cli.main([*base, "--push_to_hub", "true", "--hub_model_id", "me/tiny-orpo"]) == 0
    assert waits == [submit_cli.TASK_EXIT_WAIT_S, 30, 0]
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal (arg_types.whole)
        submit_cli.main(["--task-exit-wait", "-1", *base])
    assert refused.value.code == 2



def test_orpo_sbatch_holds_only_sbatch_lines_and_the_one_entry_point():
    """The plain-sbatch path keeps no setting of its own: its #SBATCH lines, then batch.py, which
    takes the srun flags and defaults from settings.py as submit does (the signal delay is the one
    number an #SBATCH line must spell out: it is compared here)."""
    from orpo_dist.launcher.slurm.settings import SIGNAL_DELAY_S

    sbatch = (Path(submit_cli.__file__).parents[2] / "configs" / "slurm" / "orpo.sbatch").read_text()
    code = [line for line in sbatch.splitlines() if line.strip() and not line.startswith("#")]
    assert code == ['exec python -m orpo_dist.launcher.slurm.batch "$@"']
    assert f"#SBATCH --signal=B:USR1@{SIGNAL_DELAY_S}\n" in sbatch
    assert f"default {SIGNAL_DELAY_S}" in submit_cli.make_parser().format_help().replace("\n", " ")


def test_orpo_sbatch_starts_the_submitit_jobs_code_on_every_node(tmp_path, monkeypatch, capsys):
    """batch.py (what orpo.sbatch runs) without Slurm: the srun line it starts, and its refusals."""
    from orpo_dist.launcher.slurm import batch
    from orpo_dist.launcher.slurm.settings import TASK_EXIT_WAIT_S, srun_flags
    from orpo_dist.strategies import SUBMIT_DEFAULT

    started = []
    monkeypatch.setattr(batch.subprocess, "Popen", lambda argv: started.append(argv) or
                        types.SimpleNamespace(poll=lambda: 0))
    for name in ("STRATEGY", "GPUS_PER_NODE", "TASK_EXIT_WAIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "4")
    out = tmp_path / "run"
    assert batch.run(["tiny", "--output_dir", str(out)]) == 0
    srun = started[-1]
    assert srun[:4] == ["srun", *srun_flags(TASK_EXIT_WAIT_S), "--ntasks-per-node=1"]
    assert srun[5:12] == ["-m", "orpo_dist.launcher.slurm.job", SUBMIT_DEFAULT, "4", str(out),
                          str(TINY_RECIPE), "--output_dir"]
    monkeypatch.setenv("TASK_EXIT_WAIT", "0")
    monkeypatch.setenv("STRATEGY", "fsdp2")
    assert batch.run(["tiny", "--output_dir", str(out)]) == 0
    assert started[-1][1:3] == ["--kill-on-bad-exit=1", "--ntasks-per-node=1"] and "fsdp2" in started[-1]
    for env, words in [({"STRATEGY": "zero4"}, "unknown strategy 'zero4'"), ({"GPUS_PER_NODE": "0"}, "at least 1"),
                       ({"TASK_EXIT_WAIT": "soon"}, "not a whole number")]:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            with pytest.raises(UserError, match=words):
                batch.run(["tiny", "--output_dir", str(out)])
    with pytest.raises(UserError, match="usage: sbatch"):
        batch.run([])


def test_a_batch_node_without_slurms_commands_is_named_in_one_line(tmp_path, monkeypatch):
    """orpo.sbatch on a node whose PATH lacks srun (the module loaded on the login node only), and
    a time-limit requeue whose scontrol is missing: one line each, no traceback (batch.main)."""
    import signal

    from orpo_dist.launcher.slurm import batch

    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm command at all
    monkeypatch.setattr(batch.sys, "argv", ["batch", "tiny", "--output_dir", str(tmp_path / "run")])
    with pytest.raises(UserError, match="cannot start srun on the batch node .*module load slurm"):
        batch.run(batch.sys.argv[1:])
    assert batch.main() == 2
    # srun ran (a stand-in), the time-limit signal came, and scontrol is not there to requeue.
    real_popen = batch.subprocess.Popen

    def popen(argv, **kwargs):  # srun (a stand-in that gets the signal); scontrol really run, and not found
        if argv[0] != "srun":
            return real_popen(argv, **kwargs)
        return types.SimpleNamespace(poll=lambda: (signal.raise_signal(signal.SIGUSR1), 0)[1])

    monkeypatch.setattr(batch.subprocess, "Popen", popen)
    monkeypatch.setattr(batch, "request_stop", lambda folder: "STOP written")
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        assert batch.main() == 1
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_submit_wait_notices_a_killed_old_job_within_a_minute(tmp_path, monkeypatch):
    """A job killed long after it started (OOM, a node failure, scancel) writes no result file:
    `submit --wait` must hear it from Slurm. submitit's own watcher asks sacct only after half the
    job's age (up to 10 minutes), so follow() asks itself every ask_slurm_s. A real submitit
    SlurmJob against a stand-in sacct that says RUNNING, then FAILED; the job is made an hour old
    (the watcher's start time) rather than waited for."""
    from submitit.slurm.slurm import SlurmJob

    state = tmp_path / "state"
    state.write_text("RUNNING")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f'#!/bin/sh\ns=$(cat {state})\nprintf "JobID|State|NodeList\\n4242|$s|n1\\n"\n')
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    job = SlurmJob(folder=tmp_path / "submitit", job_id="4242", tasks=(0, 1))
    try:
        assert job.state == "RUNNING"
        job.watcher._start_time -= 3600  # started an hour ago: submitit alone waits up to 10 min
        state.write_text("FAILED")
        started = __import__("time").time()
        with pytest.raises(UserError, match="job 4242 ended FAILED"):
            submit_cli.follow(job, tmp_path / "run", poll_s=0.05, ask_slurm_s=0.5)
        assert __import__("time").time() - started < 10
    finally:
        job.watcher.clear()

"""A run that is still going, and signals: a second writer refuses naming the first, readers say the
run is still training, SIGTERM/SIGHUP/SIGINT end every command in one line with no traceback, no
partial file and no process left, and a lock left by a dead run is named and replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .helpers import REPO, TINY_RECIPE, check_refusal, files_of, run_case, run_over_hub_base


def start(argv, **kwargs):
    """`orpo-dist ARGV` in a subprocess with SIGINT at its default (as in a terminal's foreground)."""
    return subprocess.Popen([sys.executable, "-m", "orpo_dist", *map(str, argv)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def wait_for(proc, ready, timeout=300):
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.3)


def signal_when(proc, ready, signum, timeout=300) -> str:
    """Send `signum` once `ready()`; the command's stderr once it has ended (killed if it hangs)."""
    try:
        wait_for(proc, ready, timeout)
        proc.send_signal(signum)
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()


def partial_files(folder) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]


def processes_naming(text) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(text) in line and "orpo_dist" in line]


def test_a_live_run_is_refused_to_writers_named_to_readers_and_ends_cleanly_on_sigterm(tmp_path, capsys):
    from orpo_dist.pickle_scan import CHECKPOINT_FIX, check_pickles
    from orpo_dist.run_folder import last_checkpoint

    run = tmp_path / "run"
    proc = start(["train", "--config", TINY_RECIPE, "--output_dir", run, "--max_steps", "500", "--save_steps", "2",
                  "--logging_steps", "1"])
    try:
        wait_for(proc, lambda: last_checkpoint(run) is not None)
        live = [
            # (case, argv, words)
            ("a second train into the folder", ["train", "--config", TINY_RECIPE, "--output_dir", run],
             ["is being written by another run", f"pid {proc.pid} on ", "since", "choose another --output_dir"]),
            ("--resume of the running run", ["train", "--config", TINY_RECIPE, "--output_dir", run, "--resume"],
             ["is being written by another run", f"pid {proc.pid}"]),
            ("launch into it", ["launch", "--dry-run", "--strategy", "ddp", "--num-processes", "2", TINY_RECIPE,
                                "--output_dir", run, "--resume"], ["is being written by another run", f"pid {proc.pid}"]),
            ("export of it", ["export", run, "--merge"], ["is still training", f"pid {proc.pid}", "orpo-dist export"]),
            ("eval of it", ["eval", run, "--no-generate"], ["is still training", "its last complete checkpoint is",
                                                             "checkpoint-"]),
        ]
        for case, argv, words in live:
            status, _, err = run_case(argv, capsys)
            check_refusal(status, err, words)
        # The allow-list of the pickle check against a real checkpoint (optimizer, scheduler, RNG states).
        check_pickles(last_checkpoint(run), CHECKPOINT_FIX, recursive=True)
    except BaseException:
        proc.kill()
        raise
    err = signal_when(proc, lambda: True, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    said = [line for line in err.splitlines() if line.startswith("orpo-dist")]
    assert len(said) == 1 and said[0].startswith("orpo-dist train: interrupted by SIGTERM"), err[-2000:]
    assert "continue the run with" in said[0] and "--resume" in said[0]
    assert not (run / "LOCK").exists() and not partial_files(run) and not processes_naming(run)

    # A lock left by a process that died (kill -9 leaves it): named, replaced, and the run goes on.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / "LOCK").write_text(f'{{"pid": {dead.pid}, "host": "{os.uname().nodename}", "since": "then"}}')
    step = int(last_checkpoint(run).name.split("-")[1])
    status, out, err = run_case(["train", "--config", TINY_RECIPE, "--output_dir", run, "--resume",
                                 "--max_steps", step + 1, "--save_steps", 500], capsys)
    assert status == 0, err[-3000:]
    assert f"replacing a stale lock in {run} (pid {dead.pid}" in out and "is gone" in out, out[-2000:]
    assert not (run / "LOCK").exists()


def test_readers_of_a_finished_run_training_again_say_which_model_they_read(tmp_path, capsys, lora_run):
    """--resume with more steps: the run has a model and a live lock. eval and export read the
    model it saved before, and say so (the run replaces it when it ends)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    holder = subprocess.Popen(  # the training process: another process holding the run's lock
        [sys.executable, "-c", "import sys, time; from orpo_dist.run_lock import RunLock; "
         "RunLock(sys.argv[1], 'orpo-dist train').acquire(); print('locked', flush=True); time.sleep(120)", str(run)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for argv in (["export", run, "--merge", "--out", tmp_path / "x"],
                     ["eval", run, "--no-generate", "--max-pairs", "2", "--out", tmp_path / "e"]):
            status, out, err = run_case(argv, capsys)
            assert status == 0, err[-3000:]
            assert f"the run in {run} is training again (pid {holder.pid}" in out and "saved before" in out, out
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- any signal, any command

SIGNAL_CASES = [
    # (case, argv(tmp, run), signal): each command waiting on a hub that never answers (the 5 s
    # wait for an HTTP answer), where a real signal finds it
    ("plan SIGHUP", lambda t, r: ["plan", "--model", "some-org/some-model"], "SIGHUP"),
    ("plan SIGINT", lambda t, r: ["plan", "--model", "some-org/some-model"], "SIGINT"),
    ("train SIGHUP", lambda t, r: ["train", "--config", "tiny", "--output_dir", t / "out", "--model_name_or_path",
                                   "some-org/some-model", "--random_init", "false"], "SIGHUP"),
    ("data check SIGTERM", lambda t, r: ["data", "check", "some-org/some-pairs"], "SIGTERM"),
    ("eval SIGHUP", lambda t, r: ["eval", r, "--base", "some-org/some-model", "--no-generate"], "SIGHUP"),
    ("export SIGTERM", lambda t, r: ["export", run_over_hub_base(t, r), "--gguf", "f16"], "SIGTERM"),
]


@pytest.mark.parametrize("case, argv, signame", SIGNAL_CASES, ids=[c[0] for c in SIGNAL_CASES])
def test_a_signal_ends_a_waiting_command_in_one_line(tmp_path, silent_hub, lora_run, case, argv, signame):
    env = {**os.environ, "HF_ENDPOINT": silent_hub.url}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(name, None)
    before = files_of(lora_run)
    argv = [str(a) for a in argv(tmp_path, lora_run)]
    # The signal once the connection check and then the request have reached the hub.
    proc = start(argv, env=env)
    err = signal_when(proc, lambda: silent_hub.accepted >= 2, getattr(signal, signame), timeout=120)
    words = "interrupted" if signame == "SIGINT" else f"interrupted by {signame}"
    assert proc.returncode == 128 + getattr(signal, signame) and "Traceback" not in err, err[-3000:]
    said = [line for line in err.splitlines() if line.startswith("orpo-dist")]  # not the libraries' warnings
    assert len(said) == 1 and said[0].startswith(f"orpo-dist {argv[0]}: {words}"), err[-2000:]
    assert files_of(lora_run) == before and not processes_naming(tmp_path)


# ---------------------------------------------------------------- signals that arrive mid-write

def _stop_in(monkeypatch, target: str, signum=signal.SIGTERM):
    """The signal arrives right after `target` (module:Class.method) has written its part: the
    handler's exception is raised there, with the partial file on disk."""
    import functools
    import importlib

    from orpo_dist.errors import Stopped

    module, path = target.split(":")
    *owners, name = path.split(".")
    owner = functools.reduce(getattr, owners, importlib.import_module(module))
    real = getattr(owner, name)

    def write_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise Stopped(signum)

    monkeypatch.setattr(owner, name, write_then_stop)


MID_WRITE_CASES = [
    # (case, what the signal interrupts, argv(tmp, run), the folder that must hold no partial file)
    ("export, mid-GGUF", "gguf:GGUFWriter.write_tensor_data", lambda t, r: ["export", r, "--gguf", "f16", "--out", t / "x"],
     lambda t, r: t / "x"),
    ("export, mid-merge", "transformers:PreTrainedTokenizerBase.save_pretrained",
     lambda t, r: ["export", r, "--merge", "--out", t / "x"], lambda t, r: t / "x"),
    ("eval, mid-picture", "matplotlib.figure:Figure.savefig",
     lambda t, r: ["eval", r, "--no-generate", "--max-pairs", "2", "--out", t / "e"], lambda t, r: t / "e"),
]


@pytest.mark.parametrize("case, target, argv, folder", MID_WRITE_CASES, ids=[c[0] for c in MID_WRITE_CASES])
def test_a_signal_mid_write_leaves_no_partial_file(tmp_path, capsys, monkeypatch, lora_run, case, target, argv, folder):
    _stop_in(monkeypatch, target)
    status, _, err = run_case(argv(tmp_path, lora_run), capsys)
    assert status == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    said = [line for line in err.splitlines() if line.startswith("orpo-dist")]
    assert said == [f"orpo-dist {argv(tmp_path, lora_run)[0]}: interrupted by SIGTERM"], err[-2000:]
    where = folder(tmp_path, lora_run)
    assert not partial_files(where) and not partial_files(lora_run), partial_files(where)


@pytest.mark.slow
def test_sigterm_on_bench_stops_every_arm_and_rank(tmp_path):
    """bench starts two launchers, each with its ranks in sessions of their own (torchrun's): a
    SIGTERM once they run leaves none of them behind, and says so in one line."""
    proc = start(["bench", "--config", "tiny", "--strategy", "ddp", "--num-processes", "2", "--steps", "50",
                  "--warmup", "0"], env={**os.environ, "TMPDIR": str(tmp_path)})
    err = signal_when(proc, lambda: any(tmp_path.glob("orpo-bench-*/done-*")), signal.SIGTERM)  # ranks stepping
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("orpo-dist")] == ["orpo-dist bench: interrupted by SIGTERM"]
    deadline = time.time() + 30
    while processes_naming(tmp_path) and time.time() < deadline:
        time.sleep(0.5)
    assert not processes_naming(tmp_path), processes_naming(tmp_path)
    assert not any(tmp_path.glob("orpo-bench-*"))  # the bench's folder is gone too

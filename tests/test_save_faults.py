"""Faults at save time leave the previous checkpoint loadable: a process killed with SIGKILL in
the middle of writing a checkpoint, and a disk that fills up while one is written (a real small
tmpfs). `--resume` then skips the torn checkpoint, says why, and goes on from the last complete
one, repeating the losses the first run had logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import REPO, TINY_RECIPE, run_cli, train_logs

pytestmark = pytest.mark.slow
# A wider tiny model, so that a checkpoint (weights + Adam state, ~0.2 GB) takes long enough to
# write that a kill lands inside it.
WIDE = ["--model_config_overrides", '{"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, '
        '"num_attention_heads": 4, "num_key_value_heads": 2}']
COMMON = ["--report_to", "none", "--logging_steps", "1", "--eval_strategy", "no", "--max_train_samples", "64"]


def complete(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file()


def test_kill_during_a_checkpoint_save_then_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "orpo_dist", "train", "--config", str(TINY_RECIPE),
                             "--output_dir", str(out), *WIDE, *COMMON, "--max_steps", "12", "--save_steps", "4"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / "checkpoint-8").is_dir() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.002)  # the folder appears when the save begins; its COMPLETE marker comes last
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    torn = out / "checkpoint-8"
    assert torn.is_dir() and not complete(torn), "the kill did not land inside the save"
    print("torn checkpoint holds:", sorted(p.name for p in torn.iterdir()))
    assert complete(out / "checkpoint-4") and not (out / "model.safetensors").exists()
    before = {r["step"]: r["loss"] for r in train_logs(out)}

    result = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, *WIDE, *COMMON, "--max_steps", "12",
                     "--save_steps", "4", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert "--resume: skipping checkpoint-8: " in said, said[-3000:]  # no trainer_state.json, or no marker
    assert "resuming from" in result.stdout and "checkpoint-4" in result.stdout
    after = {r["step"]: r["loss"] for r in train_logs(out)}
    assert sorted(after) == list(range(1, 13)) and complete(out / "checkpoint-8")
    for step in [s for s in before if s > 4]:
        assert after[step] == pytest.approx(before[step], rel=1e-5), step


@pytest.fixture
def small_disk(tmp_path):
    """A real 60 MiB tmpfs (needs root, as the Slurm tests do)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_at_save_time(small_disk):
    out = small_disk / "run"
    args = ["train", "--config", TINY_RECIPE, "--output_dir", out, *COMMON, "--max_steps", "12",
            "--save_steps", "4", "--save_total_limit", "1"]
    result = run_cli(*args)
    # checkpoint-4 (~40 MB: weights and Adam state) fits; checkpoint-8 beside it does not.
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"the disk holding {out} is full" in result.stderr
    assert "The last complete checkpoint, checkpoint-4, is intact" in result.stderr
    assert complete(out / "checkpoint-4") and not (out / "README.md").exists()

    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    result = run_cli(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout and "checkpoint-4" in result.stdout
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert [r["step"] for r in train_logs(out)] == list(range(1, 13))

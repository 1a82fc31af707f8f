"""What both Slurm paths (`orpo-dist submit` through submitit, and plain sbatch with orpo.sbatch)
ask of Slurm, written once: the srun flags, how long srun waits for a node whose exit was lost,
and how long before the time limit the job is warned to checkpoint."""

from __future__ import annotations

# srun --wait: seconds srun waits for the other nodes' tasks once one has ended. A finished run's
# nodes all leave the same final barrier within seconds; a node whose "task exited" message was lost
# (its link cut while it ended) would otherwise hold the job until the time limit, since srun
# never asks again.
TASK_EXIT_WAIT_S = 120

# Seconds before the time limit at which Slurm signals the job to checkpoint and requeue (orpo.sbatch's
# `#SBATCH --signal=B:USR1@180` holds the same number: #SBATCH lines take no variables; a test compares).
SIGNAL_DELAY_S = 180


def srun_flags(task_exit_wait: int) -> list[str]:
    """--kill-on-bad-exit: a node whose task dies (OOM, a bad GPU) ends the whole step at once. Gloo
    notices a dead peer's closed socket by itself; NCCL may not, and the other nodes would wait in
    their next collective until its timeout (30 min by default). --wait: see TASK_EXIT_WAIT_S
    (0: srun's own default, wait forever)."""
    return ["--kill-on-bad-exit=1"] + ([f"--wait={task_exit_wait}"] if task_exit_wait else [])

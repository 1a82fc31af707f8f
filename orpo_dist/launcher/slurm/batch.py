"""What orpo.sbatch runs in its batch shell: the job `orpo-dist submit` runs, without submitit.

    sbatch [--nodes N --gpus-per-node G --time T ...] orpo.sbatch RECIPE [--field value ...]

One srun task per node, with the srun flags of settings.py; each task runs the function a
submitit job runs (`python -m orpo_dist.launcher.slurm.job`: job.OrpoJob, the same port, address
rule and layout). Slurm's warning before the time limit reaches this batch shell (orpo.sbatch's
--signal=B:USR1): the run is asked to checkpoint (run_folder's STOP), srun is waited for and the
job requeued; every start passes --resume, so a requeued job continues from its last checkpoint.

Settings, from the environment (sbatch passes yours on):
  STRATEGY        a strategy of `orpo-dist launch --help` (default: submit's, zero3)
  GPUS_PER_NODE   processes per node (default: the GPUs Slurm gave this node; 1 on CPU nodes)
  TASK_EXIT_WAIT  srun --wait in seconds (default settings.TASK_EXIT_WAIT_S; 0 waits forever: use 0
                  for a recipe with push_to_hub)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ...errors import UserError
from ...run_folder import request_stop
from ...strategies import SUBMIT_DEFAULT, strategy as find_strategy
from .settings import TASK_EXIT_WAIT_S, srun_flags

PROG = "orpo.sbatch"


def _number(name: str, default: int, least: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        raise UserError(f"{name}={text!r} is not a whole number") from None
    if value < least:
        raise UserError(f"{name}={value}: give at least {least}")
    return value


def run(argv: list[str]) -> int:
    from ...recipe import check_without_hardware
    from ...recipe_files import resolve

    if not argv or argv[0].startswith("-"):
        raise UserError("usage: sbatch [sbatch options] orpo.sbatch RECIPE [--field value ...]")
    recipe, overrides = str(resolve(argv[0]).resolve()), argv[1:]
    output_dir = check_without_hardware(recipe, overrides).get("output_dir")
    if not output_dir:
        raise UserError("the recipe has no output_dir: pass --output_dir on a filesystem every node sees")
    name = os.environ.get("STRATEGY") or SUBMIT_DEFAULT
    find_strategy(name)  # refuses an unknown name, listing the known ones
    gpus = os.environ.get("SLURM_GPUS_ON_NODE", "").split("(")[0]
    per_node = _number("GPUS_PER_NODE", int(gpus) if gpus.isdigit() and int(gpus) > 0 else 1, 1)
    wait_s = _number("TASK_EXIT_WAIT", TASK_EXIT_WAIT_S, 0)
    job_id = os.environ.get("SLURM_JOB_ID", "?")
    print(f"{PROG}: job {job_id} start {int(os.environ.get('SLURM_RESTART_COUNT', '0')) + 1}: "
          f"{os.environ.get('SLURM_JOB_NUM_NODES', '?')} node(s) x {per_node} process(es), {name}, "
          f"output {output_dir}", flush=True)
    srun = ["srun", *srun_flags(wait_s), "--ntasks-per-node=1", sys.executable, "-m", "orpo_dist.launcher.slurm.job",
            name, str(per_node), str(output_dir), recipe, *overrides]
    try:
        proc = subprocess.Popen(srun)
    except OSError as err:
        raise UserError(f"cannot start srun on the batch node ({err.strerror or err}): the job script needs Slurm's "
                        "commands on its PATH (load the module that provides them in the script, e.g. `module load "
                        "slurm`); nothing was trained") from None
    warned = []

    def checkpoint(signum, _frame):
        warned.append(signum)
        print(f"{PROG}: time limit or pre-emption signal: asked the run to checkpoint ({request_stop(output_dir)})",
              flush=True)

    signal.signal(signal.SIGUSR1, checkpoint)
    while (code := proc.poll()) is None:  # poll: the handler runs between two looks, not inside a wait
        time.sleep(1)
    if warned:
        try:
            subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60, capture_output=True, text=True)
        except (OSError, subprocess.SubprocessError) as err:
            said = getattr(err, "stderr", None) or getattr(err, "strerror", None) or err
            said = said.decode(errors="replace") if isinstance(said, bytes) else said
            print(f"{PROG}: error: job {job_id} checkpointed but could not be requeued (scontrol requeue: "
                  f"{str(said).strip()}); resubmit it with --resume to continue from {output_dir}", file=sys.stderr,
                  flush=True)
            return 1
        print(f"{PROG}: job {job_id} requeued; it resumes from the last checkpoint", flush=True)
        return 0
    return code


def main() -> int:
    try:
        return run(sys.argv[1:])
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""`orpo-dist submit`: run a recipe on Slurm through submitit, one task per node.

Each node's task runs orpo-dist's launcher (accelerate + DeepSpeed, one process per GPU) with its
machine rank and the main address taken from that task's own Slurm environment. The job is
checkpointable: on Slurm's warning signal before the time limit or a pre-emption it saves a
checkpoint and is requeued, and the restarted job resumes in the same output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import signal
import shutil
import sys
import time
from pathlib import Path

from ...arg_types import positive, whole
from ...errors import Interrupted, UserError, signal_number, stopped_words
from ...run_lock import check_not_being_written, claim
from ...run_folder import RUN_MARKER_FILE, SUBMITIT_FOLDER, check_new_run_folder, has_checkpoints, resume_advice, training_logs
from ...strategies import AUTO, STRATEGIES, SUBMIT_DEFAULT
from .settings import SIGNAL_DELAY_S, TASK_EXIT_WAIT_S, srun_flags


TERMINAL_FAILURES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
                     "DEADLINE", "INTERRUPTED"}

EPILOG = """examples:
  orpo-dist submit --nodes 2 --gpus-per-node 8 --partition gpu --time 24:00:00 --strategy zero3 RECIPE
  orpo-dist submit --nodes 2 --gpus-per-node 0 --strategy zero3 --wait tiny  # CPU nodes
  orpo-dist submit --cluster local --gpus-per-node 0 --wait tiny             # no Slurm
"""


def parse_time(text: str) -> int:
    """Slurm time ('90', '2:00:00', '1-12:00:00', 'MM:SS') -> minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"--time {text!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = match.groups()
    if c is not None:
        minutes = int(a) * 60 + int(b) + (1 if int(c) else 0)
    elif b is not None:
        minutes = int(a) * 60 + int(b) if days else int(a) + (1 if int(b) else 0)
    else:
        minutes = int(a) * 60 if days else int(a)
    return minutes + int(days or 0) * 1440


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-dist submit", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=whole(1), default=1)
    p.add_argument("--gpus-per-node", type=whole(0),
                   help="GPUs per node (default: what the partition's nodes report in sinfo's GRES; with "
                        "--cluster local, the GPUs here); 0: CPU nodes, one process each")
    p.add_argument("--strategy", default=SUBMIT_DEFAULT, choices=[*STRATEGIES, AUTO])
    p.add_argument("--partition")
    p.add_argument("--time", default="4:00:00", help="time limit: minutes, HH:MM:SS or D-HH:MM:SS")
    p.add_argument("--account")
    p.add_argument("--qos")
    p.add_argument("--constraint")
    p.add_argument("--mem", type=whole(1), help="GB of memory per node")
    p.add_argument("--cpus-per-node", type=whole(1), help="CPUs for the task on each node")
    p.add_argument("--exclusive", action="store_true")
    p.add_argument("--job-name", default="orpo-dist")
    p.add_argument("--signal-delay", type=whole(0), default=SIGNAL_DELAY_S,
                   help="seconds before the time limit at which Slurm signals the job to checkpoint "
                        f"(default {SIGNAL_DELAY_S})")
    p.add_argument("--max-requeues", type=whole(0), default=20,
                   help="how many time-limit requeues the job may take before it gives up (default 20)")
    p.add_argument("--task-exit-wait", type=whole(0),
                   help="seconds srun waits for the other nodes once one node's task has ended, before it ends "
                        f"the job step (srun --wait; default {TASK_EXIT_WAIT_S}, 0 waits forever). Without it "
                        "a node whose link was cut as it ended holds the job until the time limit. A recipe "
                        "with push_to_hub defaults to 0: rank 0 uploads alone after the other nodes exit")
    p.add_argument("--cluster", choices=["slurm", "local"], default="slurm",
                   help="local: run through submitit's local executor on this machine (no Slurm)")
    p.add_argument("--resume", action="store_true", help="continue the run already in the output folder")
    p.add_argument("--gpu-mem", type=positive, help="GiB per GPU, for --strategy auto and the fit check")
    p.add_argument("--cpu-mem-gib", type=positive, help="host GiB per node, for the planner's offload check")
    p.add_argument("--force", action="store_true", help="submit even if the planner says it will not fit")
    p.add_argument("--wait", action="store_true", help="follow the job to its end and print its final metrics")
    p.add_argument("recipe", help="a YAML recipe, or a bundled recipe's name (`orpo-dist recipes` lists them)")
    return p


def main(argv: list[str]) -> int:
    args, overrides = make_parser().parse_known_args(argv)
    from ...recipe import check_without_hardware
    from ...recipe_files import resolve

    args.recipe = str(resolve(args.recipe).resolve())  # the job's nodes read this file
    values = check_without_hardware(args.recipe, overrides)  # a recipe that fails to parse: nothing submitted
    output_dir = values.get("output_dir")
    if not output_dir:
        raise UserError("the recipe has no output_dir: set one on a filesystem every node can see")
    output_dir = Path(output_dir).resolve()
    check_new_run_folder(output_dir, args.resume or bool(values.get("resume")))
    check_not_being_written(output_dir)
    if has_checkpoints(output_dir) and not args.resume:
        raise UserError(f"{output_dir} already holds checkpoints: pass --resume to continue that run, "
                        "or choose another --output_dir")
    if args.task_exit_wait is None:
        args.task_exit_wait = 0 if values.get("push_to_hub") else TASK_EXIT_WAIT_S
    timeout_min = parse_time(args.time)
    if args.cluster == "slurm" and timeout_min * 60 <= args.signal_delay + 60:
        raise UserError(f"--time {args.time} leaves no time before the checkpoint signal (--signal-delay "
                        f"{args.signal_delay}s); ask for more time")
    if args.cluster == "slurm":
        from .preflight import check

        asked = args.gpus_per_node
        partition, args.gpus_per_node = check(args.partition, args.nodes, asked)
        if asked is None:
            print(f"orpo-dist submit: {args.gpus_per_node} GPU(s) per node, as the nodes of partition {partition} "
                  "report (--gpus-per-node overrides)")
    else:
        if args.nodes != 1:
            raise UserError("--cluster local runs on this one machine: use --nodes 1")
        if args.gpus_per_node is None:
            from ..command import gpu_count

            args.gpus_per_node = gpu_count()
        elif args.gpus_per_node < 0:
            raise UserError(f"--gpus-per-node cannot be negative, got {args.gpus_per_node}")
        partition = None
    strategy = args.strategy
    if strategy == AUTO or not args.force:
        from ..auto import choose_strategy
        from ...planner import Hardware

        # The job's nodes, not this login node: GPUs per node from the request, memory from --gpu-mem.
        hardware = None
        if args.gpus_per_node and args.gpu_mem:
            hardware = Hardware(args.gpus_per_node, args.nodes, args.gpu_mem, args.cpu_mem_gib, "cuda")
        elif not args.gpus_per_node:  # CPU nodes: one process each, sharing the node's memory
            hardware = Hardware(1, args.nodes, args.gpu_mem or (args.mem or 16), None, "cpu")
        strategy = choose_strategy(strategy, values, hardware, args.force)

    job = submit_or_explain(args, strategy, overrides, output_dir, timeout_min, partition)
    print(f"orpo-dist submit: job {job.job_id} ({strategy}, {args.nodes} node(s) x "
          f"{args.gpus_per_node} GPU(s)) -> {output_dir}")
    print(f"  logs: {job.paths.stdout}\n        {job.paths.stderr}")
    if args.cluster == "slurm":
        print(f"  follow: squeue -j {job.job_id}    cancel: scancel {job.job_id}")
    if not args.wait:
        return 0
    try:
        return follow(job, output_dir)
    except KeyboardInterrupt as err:
        if signal_number(err) == signal.SIGHUP:  # the terminal closed: the job was not asked to stop
            raise Interrupted(f"{stopped_words(err)} (the terminal closed): job {job.job_id} keeps running; "
                              f"follow it with `squeue -j {job.job_id}` and its logs, cancel it with `scancel "
                              f"{job.job_id}`", signal.SIGHUP) from None
        raise Interrupted(f"{stopped_words(err)}: {stop_job(job)}. "
                          f"{resume_advice(output_dir, 'orpo-dist submit ' + shlex.join(argv))}",
                          signal_number(err)) from None


def stop_job(job, wait_s: float = 60.0) -> str:
    """Ctrl-C on `submit --wait`: the job is cancelled (its checkpoints stay), not left running unseen."""
    try:
        job.cancel(check=False)
    except Exception as err:  # noqa: BLE001 - say what to do by hand rather than fail the interrupt
        return f"job {job.job_id} could not be cancelled ({err}): cancel it with scancel {job.job_id}"
    deadline = time.time() + wait_s
    while time.time() < deadline and not job.done():
        time.sleep(1)
    return f"job {job.job_id} was cancelled" + ("" if job.done() else " (it is still stopping)")


def submit_or_explain(args, strategy, overrides, output_dir: Path, timeout_min: int, partition):
    """submit(), and when sbatch refuses the job (an account, partition, QOS or time limit), Slurm's
    own words in one line, with nothing of this attempt left in the output folder."""
    from submitit.core.utils import FailedJobError

    folder = output_dir / SUBMITIT_FOLDER
    created = next((p for p in (folder, *folder.parents) if p.exists()), None)
    before = set(folder.rglob("*")) if folder.is_dir() else set()
    marker = output_dir / RUN_MARKER_FILE
    claimed_before = marker.exists()
    claim(output_dir, "orpo-dist submit")  # before the job exists: its nodes must find a run's folder
    refusal = io.StringIO()
    try:
        with contextlib.redirect_stderr(refusal):  # submitit prints sbatch's stderr itself, raw
            return submit(args, strategy, overrides, output_dir, timeout_min, partition)
    except FailedJobError as err:
        words = str(err).strip() or refusal.getvalue().strip()
        if not claimed_before:
            marker.unlink(missing_ok=True)
        if folder.is_dir():
            for path in sorted(set(folder.rglob("*")) - before, key=lambda p: -len(p.parts)):
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        for path in (folder, *folder.parents):  # folders this attempt created, if left empty
            if path == created or not path.is_dir() or any(path.iterdir()):
                break
            path.rmdir()
        errors = [line.strip() for line in words.splitlines() if "error" in line.lower()] or words.splitlines()[-1:]
        raise UserError(f"Slurm refused the job: {'; '.join(errors) or 'sbatch failed'}. Nothing was submitted "
                        "and nothing was left in the output folder; fix the option Slurm names and submit again") \
            from None


def submit(args, strategy, overrides, output_dir: Path, timeout_min: int, partition):
    import submitit

    from .job import OrpoJob

    folder = output_dir / SUBMITIT_FOLDER
    extra = {"slurm_max_num_timeout": args.max_requeues} if args.cluster == "slurm" else {}
    executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster, **extra)
    params = dict(name=args.job_name, nodes=args.nodes, tasks_per_node=1, timeout_min=timeout_min)
    if args.gpus_per_node:
        params["gpus_per_node"] = args.gpus_per_node
    if args.cpus_per_node:
        params["cpus_per_task"] = args.cpus_per_node
    if args.mem:
        params["mem_gb"] = args.mem
    if args.cluster == "slurm":
        params.update(slurm_partition=partition, slurm_signal_delay_s=args.signal_delay,
                      slurm_srun_args=srun_flags(args.task_exit_wait))
        for key in ("account", "qos", "constraint"):
            if getattr(args, key):
                params[f"slurm_{key}"] = getattr(args, key)
        if args.exclusive:
            params["slurm_exclusive"] = True
    executor.update_parameters(**params)
    processes_per_node = max(args.gpus_per_node, 1)
    overrides = [*overrides, "--output_dir", str(output_dir)]
    return executor.submit(OrpoJob(strategy, args.recipe, overrides, processes_per_node, str(output_dir)))


def final_state(job, state: str, wait_s: float = 30.0) -> str:
    """Slurm's final word on a finished job (sacct may lag a few seconds behind the result files)."""
    from submitit.slurm.slurm import SlurmJob

    if not isinstance(job, SlurmJob):  # the local executor's state is final already
        return state
    deadline = time.time() + wait_s
    while time.time() < deadline:
        state = job.get_info(mode="force").get("State", state) or state
        if state.split()[0] in TERMINAL_FAILURES | {"COMPLETED"}:
            break
        time.sleep(1)
    return state


def task_failure(job) -> str | None:
    """The last line of the error a task raised (not the remote traceback), or None if none did."""
    try:
        job.results()
    except Exception as err:  # noqa: BLE001 - submitit re-raises whatever the task raised
        last = [line for line in str(err).splitlines() if line.strip() and not line.startswith((" ", "-"))]
        return next((line for line in reversed(last) if "Error" in line), last[-1] if last else "failed")
    return None


def follow(job, output_dir: Path, poll_s: float = 2.0, ask_slurm_s: float = 30.0) -> int:
    last, asked = None, time.time()
    while True:
        # The result files answer every poll; Slurm itself (sacct) is asked at least every
        # ask_slurm_s. submitit alone asks after half the job's age (up to 10 min): a job killed
        # an hour in (OOM, node failure, scancel), which writes no result, would be noticed ~30 min late.
        if time.time() - asked >= ask_slurm_s:
            job.get_info(mode="force")  # refreshes the state every task's done() reads
            asked = time.time()
        done = job.done()
        state = job.state  # Slurm's word (sacct), or submitit's for the local executor
        if state != last:
            print(f"  job {job.job_id}: {state}", flush=True)
            last = state
        if done:
            break
        time.sleep(poll_s)
    state = final_state(job, state)
    reason = task_failure(job) if job.paths.result_pickle.exists() else None
    ended_badly = state.split()[0] in TERMINAL_FAILURES
    if ended_badly or reason:
        # A task can fail while Slurm still says RUNNING: another node's task is still ending (srun
        # --wait bounds that).
        how = f"ended {state}" if ended_badly else f"failed (Slurm: {state})"
        raise UserError(
            f"job {job.job_id} {how}" + (f": {reason}" if reason else "") + ". Its last checkpoint (if "
            f"any) is kept in {output_dir}: resubmit with --resume to continue.\n  logs: {job.paths.stderr}"
        )
    results = job.results()
    for r in results:
        print(f"  node {r['node']} ({r['hostname']}): {r['status']}, started {r['restarts'] + 1} time(s)")
    logs = training_logs(output_dir)
    if logs:
        final = {k: v for k, v in logs[-1].items() if k in ("step", "loss", "nll_loss", "log_odds_ratio",
                                                            "rewards/margins", "rewards/accuracies")}
        print(f"  final metrics: {json.dumps(final)}")
    print(f"  run written to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

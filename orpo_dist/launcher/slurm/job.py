"""The function a Slurm job runs, one task per node: orpo-dist's launcher with this node's rank.

Scheme: one Slurm task per node. Each task builds the same `accelerate launch` command as
`orpo-dist launch` (which starts one process per GPU of its node), with machine rank = the task's
own SLURM node index and the main address = the first node of the job, resolved to an address.
Nothing is taken from a constant, and every node computes the same rendezvous port from the job id.

Pre-emption / time limit: submitit delivers Slurm's warning signal (USR2) to task 0, which calls
`checkpoint()`: it asks the run to stop (OUTPUT_DIR/STOP; every rank agrees on the step, saves a
checkpoint and exits), waits for that, and hands submitit the same job to requeue. Every start
passes --resume, so a requeued job continues from its last checkpoint in the same output folder.

Plain sbatch (orpo.sbatch, batch.py) runs this same job on each node, as
`python -m orpo_dist.launcher.slurm.job STRATEGY PROCESSES_PER_NODE OUTPUT_DIR RECIPE [overrides]`;
there the batch shell takes the warning and requeues, and a node that stopped returns at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import submitit

from ...run_folder import EXIT_STOPPED, request_stop, was_stopped
from ..command import Layout, build, ignore_stop_signals
from ..failures import StderrRelay, failure_message
from ..network import GLOO_INTERFACE_VARIABLE, local_address_towards


def node_address(hostname: str) -> str:
    """An address for a Slurm node name: DNS first, else Slurm's own NodeAddr."""
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", hostname], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"cannot resolve the address of node {hostname!r}: it is not in DNS and `scontrol show "
                           f"node` failed ({err})") from None
    for token in out.stdout.split():
        if token.startswith("NodeAddr="):
            return token.split("=", 1)[1]
    raise RuntimeError(f"cannot resolve the address of node {hostname!r}")


def rendezvous_port(job_id: str) -> int:
    digits = "".join(ch for ch in str(job_id) if ch.isdigit()) or "0"
    return 20000 + int(digits) % 20000


class OrpoJob(submitit.helpers.Checkpointable):
    def __init__(self, strategy: str, recipe: str, overrides: list[str], processes_per_node: int,
                 output_dir: str, stop_wait_s: int = 600):
        self.strategy = strategy
        self.recipe = recipe
        self.overrides = list(overrides)
        self.processes_per_node = processes_per_node
        self.output_dir = output_dir
        self.stop_wait_s = stop_wait_s
        self._proc: subprocess.Popen | None = None

    def __getstate__(self):  # submitit pickles the job to requeue it; a live process can't travel
        state = dict(self.__dict__)
        state["_proc"] = None
        return state

    def __call__(self) -> dict:
        env = submitit.JobEnvironment()
        node_name = os.environ.get("SLURMD_NODENAME", env.hostname)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        layout = Layout(
            num_processes=self.processes_per_node * env.num_nodes,
            num_machines=env.num_nodes,
            machine_rank=env.node,
            main_process_ip=node_address(env.hostnames[0]),
            main_process_port=rendezvous_port(env.job_id),
        )
        command = build(self.strategy, layout, self.recipe, [*self.overrides, "--resume"])
        # Which of this node's addresses and interfaces the others are reached by: the first thing
        # to read when nodes cannot find each other.
        interface = command.env.get(GLOO_INTERFACE_VARIABLE) or os.environ.get(GLOO_INTERFACE_VARIABLE, "?")
        own = local_address_towards(layout.main_process_ip) or "?"
        print(f"orpo-dist job {env.job_id}: node {env.node}/{env.num_nodes} ({env.hostname}, {own} on {interface}), "
              f"start {restarts + 1}, main {layout.main_process_ip}:{layout.main_process_port}", flush=True)
        print(command.shell(), flush=True)
        started = time.time()
        self._proc = subprocess.Popen(command.argv, env={**os.environ, **command.env},
                                      preexec_fn=ignore_stop_signals, stderr=subprocess.PIPE)
        relay = StderrRelay(self._proc.stderr)
        # Poll rather than wait(): Slurm's signal runs checkpoint() in this thread, and a wait()
        # interrupted there holds the Popen lock that checkpoint()'s own wait needs.
        while (code := self._proc.poll()) is None:
            time.sleep(1)
        relay.wait()
        if was_stopped(self.output_dir, code):
            # Checkpointed for pre-emption. Task 0 is requeuing the job, which ends this task too;
            # wait for that rather than report a result that isn't one.
            print(f"orpo-dist job {env.job_id}: node {env.node} checkpointed and stopped; waiting for the requeue",
                  flush=True)
            time.sleep(self.stop_wait_s)  # 0 under plain sbatch, whose batch shell requeues once srun ends
            return {"node": env.node, "hostname": node_name, "status": "stopped", "restarts": restarts}
        if code < 0:
            raise RuntimeError(f"training on node {env.node} ({node_name}) was killed by signal {-code} "
                               "(scancel, a node failure or the time limit)")
        if code != 0:
            raise RuntimeError(f"training on node {env.node} ({node_name}) failed: "
                               + failure_message(code, relay.failure_summary, relay.lost_contact))
        return {"node": env.node, "hostname": node_name, "status": "completed", "restarts": restarts,
                "seconds": round(time.time() - started, 1)}

    def checkpoint(self, *args, **kwargs):
        """Slurm's warning signal reached task 0: have the run checkpoint and stop, then requeue."""
        stop = request_stop(self.output_dir)
        print(f"orpo-dist: pre-emption signal: asked the run to checkpoint ({stop})", file=sys.stderr, flush=True)
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=self.stop_wait_s)
            except subprocess.TimeoutExpired:
                print("orpo-dist: the run did not stop in time; requeuing from its last checkpoint",
                      file=sys.stderr, flush=True)
            else:
                if code != 0 and not was_stopped(self.output_dir, code):
                    # Killed while checkpointing (scancel, node failure): a cancelled job must stay
                    # cancelled. Returning None tells submitit not to requeue.
                    print(f"orpo-dist: the run ended with status {code} instead of checkpointing; not requeuing",
                          file=sys.stderr, flush=True)
                    return None
        return super().checkpoint(*args, **kwargs)


def main(argv: list[str]) -> int:
    """One node's task of a plain-sbatch job (batch.py starts it with srun): the submitit job's code."""
    if len(argv) < 4 or not argv[1].isdigit():
        print("usage: python -m orpo_dist.launcher.slurm.job STRATEGY PROCESSES_PER_NODE OUTPUT_DIR RECIPE "
              "[--field value ...]", file=sys.stderr)
        return 2
    strategy, per_node, output_dir, recipe, *overrides = argv
    # submitit's Slurm environment (node, nodes, job id: what OrpoJob reads) knows it is in a Slurm
    # job by this variable, which its own job script sets.
    os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
    try:
        result = OrpoJob(strategy, recipe, overrides, int(per_node), output_dir, stop_wait_s=0)()
    except RuntimeError as err:
        print(f"orpo-dist job: {err}", file=sys.stderr, flush=True)
        return 1
    return EXIT_STOPPED if result["status"] == "stopped" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Build the `accelerate launch` command (and its environment) for a strategy.

Launching layer only: it turns a strategy, a process/machine layout and a recipe path into a
command line; it never looks inside ORPO. The per-process entry point is `-m orpo_dist.train`.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field

from ..errors import UserError
from ..hardware import cpu_launch_env
from .network import GLOO_INTERFACE_VARIABLE, interface_towards
from ..strategies import strategy as strategy_record

DEFAULT_PORT = 29500


@dataclass
class Layout:
    """How many processes where. Multi-node values come from flags or each node's own environment."""

    num_processes: int  # in total, over all machines (accelerate's convention)
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = DEFAULT_PORT


@dataclass
class LaunchCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the caller's environment

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def ignore_stop_signals() -> None:
    """preexec_fn for launcher subprocesses: accelerate and torchrun's agent would die of
    SIGUSR1/2 (Slurm signals every process of a job before its limit). Ignoring them is inherited
    by the training processes, which install their own checkpoint-and-stop handler."""
    import signal

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0


def layout_from_env(num_processes: int | None, num_machines: int, machine_rank: int | None,
                    main_process_ip: str | None, main_process_port: int | None,
                    environ: dict[str, str] | None = None) -> Layout:
    """Fill what the flags left out from this node's environment (never from a constant)."""
    env = os.environ if environ is None else environ
    if num_machines < 1:
        raise UserError(f"--num-machines must be at least 1, got {num_machines}")
    if num_processes is None:
        num_processes = max(gpu_count(), 1) * num_machines
    if num_processes < 1:
        raise UserError(f"--num-processes must be at least 1, got {num_processes}")
    if num_processes % num_machines:
        raise UserError(f"--num-processes {num_processes} (the total) does not divide over {num_machines} machines")
    if machine_rank is None:
        for name in ("MACHINE_RANK", "NODE_RANK", "GROUP_RANK"):
            if env.get(name, "").isdigit():
                machine_rank = int(env[name])
                break
    main_process_ip = main_process_ip or env.get("MASTER_ADDR") or env.get("MAIN_PROCESS_IP")
    if main_process_port is None:
        main_process_port = int(env.get("MASTER_PORT") or env.get("MAIN_PROCESS_PORT") or DEFAULT_PORT)
    if num_machines > 1:
        if machine_rank is None:
            raise UserError(
                "a multi-machine launch needs this machine's rank: pass --machine-rank R or set "
                "MACHINE_RANK/NODE_RANK in each node's environment (under Slurm, `orpo-dist submit` does it)"
            )
        if not main_process_ip:
            raise UserError("a multi-machine launch needs --main-process-ip (or MASTER_ADDR): the rank-0 node's address")
    machine_rank = machine_rank or 0
    if not 0 <= machine_rank < num_machines:
        raise UserError(f"--machine-rank {machine_rank} is outside 0..{num_machines - 1}")
    return Layout(num_processes, num_machines, machine_rank, main_process_ip, main_process_port)


def build(strategy: str, layout: Layout, recipe: str, overrides: list[str], on_gpu: bool | None = None,
          entry: tuple[str, ...] = ("-m", "orpo_dist.train")) -> LaunchCommand:
    """`entry` is what each process runs: orpo-dist's trainer unless a caller (a test probe) says otherwise."""
    chosen = strategy_record(strategy)
    if chosen.processes == "one" and layout.num_processes != 1:
        raise UserError(f"strategy {strategy} runs one process, not {layout.num_processes}: use a strategy for "
                        "several processes (ddp, zero3, fsdp2, ...)")
    on_gpu = gpu_count() > 0 if on_gpu is None else on_gpu
    argv = [sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(chosen.accelerate_config),
            "--num_processes", str(layout.num_processes),
            "--num_machines", str(layout.num_machines)]
    if chosen.deepspeed_config is not None:
        argv += ["--deepspeed_config_file", str(chosen.deepspeed_config)]
    if layout.num_machines > 1:
        argv += ["--machine_rank", str(layout.machine_rank), "--main_process_ip", str(layout.main_process_ip),
                 "--main_process_port", str(layout.main_process_port)]
    elif chosen.processes != "one":
        argv += ["--main_process_port", str(layout.main_process_port)]
    argv += [*entry, "--config", str(recipe), *overrides]

    # torch's c10d prints a FutureWarning on every ZeRO all-gather: thousands of lines per run.
    env: dict[str, str] = {} if "PYTHONWARNINGS" in os.environ else {"PYTHONWARNINGS": "ignore::FutureWarning"}
    if layout.num_machines > 1 and GLOO_INTERFACE_VARIABLE not in os.environ:
        # gloo would otherwise bind to what the hostname resolves to, often loopback (network.py).
        found = interface_towards(str(layout.main_process_ip))
        if found:
            env[GLOO_INTERFACE_VARIABLE] = found[0]
    if not on_gpu:  # CPU processes stand in for GPUs
        env.update(cpu_launch_env(chosen.engine, layout.num_processes, layout.num_machines))
    return LaunchCommand(argv, env)

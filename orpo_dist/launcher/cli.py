"""`orpo-dist launch`: run a recipe over several processes with accelerate (+ DeepSpeed ZeRO).

Builds the `accelerate launch ... -m orpo_dist.train --config RECIPE` command for a strategy and
runs it (or prints it with --dry-run). Without GPUs the same strategies run as CPU processes over
gloo, with the settings that make the ranks really synchronise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys

from ..arg_types import PORT, positive, whole
from ..errors import INTERRUPTED, Interrupted, UserError
from ..run_lock import check_not_being_written
from ..run_folder import check_new_run_folder, last_checkpoint, resume_advice, was_stopped
from .command import DEFAULT_PORT, build, gpu_count, ignore_stop_signals, layout_from_env
from .failures import StderrRelay, failure_message
from ..strategies import AUTO, STRATEGIES

EPILOG = """examples:
  orpo-dist launch --strategy zero3 --num-processes 2 tiny
  orpo-dist launch --strategy fsdp2 --num-processes 8 RECIPE   # torch's FSDP2 instead of ZeRO-3
  orpo-dist launch --strategy ddp --num-processes 8 llama3-8b-qlora --learning_rate 5e-6
  orpo-dist launch --strategy auto --num-processes 8 my-recipe.yaml
  # two machines, 8 GPUs each; run on each node (rank from the flag or MACHINE_RANK/NODE_RANK):
  orpo-dist launch --strategy zero3 --num-processes 16 --num-machines 2 --machine-rank 0 \\
      --main-process-ip 10.0.0.1 RECIPE
  orpo-dist launch --dry-run --strategy zero2 --num-processes 4 RECIPE   # print the command only
"""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-dist launch", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", default=AUTO, choices=[*STRATEGIES, AUTO],
                   help="how to spread the run (default auto: the planner picks the fastest that fits)")
    p.add_argument("--num-processes", type=whole(1),
                   help="processes over all machines (default: GPUs here x machines, or 1 without GPUs)")
    p.add_argument("--num-machines", type=whole(1), default=1)
    p.add_argument("--machine-rank", type=whole(0), help="this machine's rank (default: MACHINE_RANK/NODE_RANK)")
    p.add_argument("--main-process-ip", help="rank-0 machine's address (default: MASTER_ADDR)")
    p.add_argument("--main-process-port", type=PORT, help=f"rendezvous port (default: MASTER_PORT or {DEFAULT_PORT})")
    p.add_argument("--gpu-mem", type=positive, help="GiB per GPU for --strategy auto (default: measured)")
    p.add_argument("--force", action="store_true", help="launch even if the planner says it will not fit")
    p.add_argument("--dry-run", action="store_true", help="print the command and exit")
    p.add_argument("recipe", help="a YAML recipe, or a bundled recipe's name (`orpo-dist recipes` lists them)")
    return p


def main(argv: list[str]) -> int:
    args, overrides = make_parser().parse_known_args(argv)
    from ..recipe import check_without_hardware
    from ..recipe_files import resolve

    recipe = str(resolve(args.recipe))  # every rank reads the file this names
    values = check_without_hardware(recipe, overrides)  # fail before any process starts
    check_new_run_folder(values.get("output_dir"), bool(values.get("resume")))
    check_not_being_written(values.get("output_dir"))
    layout = layout_from_env(args.num_processes, args.num_machines, args.machine_rank,
                             args.main_process_ip, args.main_process_port)
    strategy = args.strategy
    if strategy == AUTO or not args.force:
        from ..planner import detect_hardware
        from .auto import choose_strategy

        hardware = detect_hardware(layout.num_processes, layout.num_machines, args.gpu_mem)
        strategy = choose_strategy(strategy, values, hardware, args.force)
    command = build(strategy, layout, recipe, overrides)
    print(f"orpo-dist launch: {strategy} x {layout.num_processes} process(es)"
          f"{' on ' + str(layout.num_machines) + ' machines' if layout.num_machines > 1 else ''}"
          f"{'' if gpu_count() else ' (CPU processes over gloo)'}", flush=True)
    print(command.shell(), flush=True)
    if args.dry_run:
        return 0
    return run(command, values.get("output_dir"), "orpo-dist launch " + shlex.join(argv))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(command, output_dir: str | None = None, user_command: str = "") -> int:
    """Run the launcher in its own process group and pass SIGTERM/SIGINT/SIGUSR1/2 on to it: the
    training processes checkpoint and stop on SIGUSR1/2 (the launchers in between ignore them).
    Ctrl-C stops every process and ends in one line: what is kept, and `user_command` to resume."""
    proc = subprocess.Popen(command.argv, env={**os.environ, **command.env}, start_new_session=True,
                            preexec_fn=ignore_stop_signals, stderr=subprocess.PIPE)
    relay = StderrRelay(proc.stderr)

    def forward(signum, _frame):
        if signum in STOP_SIGNALS:
            # Every way to stop the job takes the path Ctrl-C takes (torchrun prints a
            # SignalException traceback for SIGTERM): each rank ends its step and says nothing more.
            relay.interrupted = signum
            signum = signal.SIGINT
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    wanted = [s for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN] + [signal.SIGUSR1, signal.SIGUSR2]
    previous = {s: signal.signal(s, forward) for s in wanted}
    try:
        code = proc.wait()
        relay.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if relay.interrupted:
        signum = relay.interrupted
        words = INTERRUPTED if signum == signal.SIGINT else f"{INTERRUPTED} by {signal.Signals(signum).name}"
        raise Interrupted(f"{words}: every training process was stopped. "
                          f"{resume_advice(output_dir, user_command)}", signum)
    if was_stopped(output_dir, code):
        print("orpo-dist launch: the run checkpointed and stopped on request; continue it with --resume", flush=True)
        return code
    if code != 0:
        raise UserError(failure_message(code, relay.failure_summary, relay.lost_contact) + resume_hint(output_dir))
    return 0


def resume_hint(output_dir: str | None) -> str:
    last = last_checkpoint(output_dir) if output_dir else None
    if last is None:
        return ""
    return f".\n  The last complete checkpoint is {last}: continue the run with --resume"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

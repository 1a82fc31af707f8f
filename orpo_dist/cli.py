"""`orpo-dist` command: dispatches to one module per subcommand.

Each subcommand module exposes `main(argv: list[str]) -> int`. Imports are lazy: `orpo-dist
--help`, `orpo-dist recipes` and the --help of data, demo, launch, submit and plan import neither
torch nor TRL (tests/test_layout.py checks). The commands that read a recipe (train, launch,
submit, plan) check it with TRL's own argument classes and defaults, so a recipe that launches is
one that trains; importing those classes brings torch and transformers in, which is most of the
3-5 s `orpo-dist launch --dry-run` takes to start on a 2-core CPU (`train --help` lists those
classes' fields, so it pays that too).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from .errors import Interrupted, Stopped, UserError, signal_number, stopped_words

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT is Python's KeyboardInterrupt already


def _raise_stopped(signum, _frame):
    for sig in STOP_SIGNALS:  # a second signal while the first one's cleanup runs: stop at once
        signal.signal(sig, signal.SIG_DFL)
    raise Stopped(signum)


def stop_cleanly_on_signals() -> dict:
    """SIGTERM and SIGHUP end a command as Ctrl-C does: cleanup runs, one line, 128 + signal. A
    signal someone chose to ignore (nohup's SIGHUP) stays ignored. A training rank under a launcher
    keeps the default (it dies at once): torchrun ends its ranks with SIGTERM, and a rank blocked in
    a collective would only run a Python handler after the launcher's grace period."""
    if os.environ.get("LOCAL_RANK") is not None:
        return {}
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler == signal.SIG_DFL:
            signal.signal(sig, _raise_stopped)
    return previous

COMMANDS = {
    "train": ("orpo_dist.train", "train with ORPO in this process (also the per-process entry point)"),
    "data": ("orpo_dist.data.cli", "inspect a preference dataset: `orpo-dist data check DATASET`"),
    "eval": ("orpo_dist.eval.cli", "score held-out pairs for a base and a trained model, side by side"),
    "report": ("orpo_dist.report.cli", "draw a run's training curves (loss, rewards, accuracy) as PNGs"),
    "export": ("orpo_dist.export.cli", "merge the adapter; write a GGUF for llama.cpp and an Ollama Modelfile"),
    "demo": ("orpo_dist.demo", "align SmolLM2-135M-Instruct on the bundled preference set, then evaluate"),
    "launch": ("orpo_dist.launcher.cli", "run a recipe over several processes with accelerate + DeepSpeed"),
    "submit": ("orpo_dist.launcher.slurm.cli", "submit a recipe to Slurm through submitit"),
    "plan": ("orpo_dist.planner.cli", "predict memory per GPU and recommend a strategy"),
    "recipes": ("orpo_dist.recipes_cli", "list the bundled recipes, or copy one to edit"),
    "bench": ("orpo_dist.bench.cli", "time the stock ORPO step (TRL's algorithm) against the fast one, side by side"),
}


def usage() -> str:
    lines = ["usage: orpo-dist COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {helptext}" for name, (_, helptext) in COMMANDS.items()]
    lines += ["", "Run `orpo-dist COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"orpo-dist {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"orpo-dist: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    previous = stop_cleanly_on_signals()
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except Interrupted as err:
        print(f"\norpo-dist {name}: {err}", file=sys.stderr)  # on a line of its own, after any progress bar
        return err.exit_code
    except UserError as err:
        print(f"orpo-dist {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"\norpo-dist {name}: {stopped_words(err)}", file=sys.stderr)  # after any progress bar
        return 128 + signal_number(err)
    except SystemExit as exit_:  # argparse's --help (0) and refusals (2): main() returns, it never exits
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # sys.exit("message") semantics
        return 1
    finally:
        for sig, handler in previous.items():  # as they were (main() also runs inside other programs)
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())

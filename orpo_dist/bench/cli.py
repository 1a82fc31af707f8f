"""`orpo-dist bench`: the stock ORPO step (TRL's algorithm) against orpo-dist's fast step, side by side.

Both arms are ordinary training runs of the same recipe (same model, data, batch, seed and
process layout), started once each and kept alive; the benchmark then lets them take one
optimizer step at a time, in turn (stock first on odd steps, fast first on even ones), so that
they never share the CPU or GPU and drift in machine load hits both alike. Warm-up steps are
excluded. Each process reports its step times, pairs, unique tokens (a pair's shared prefix
counted once, the same count for both arms) and its peak resident memory over the measured steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..arg_types import positive, whole
from ..atomic import write_text
from ..errors import UserError
from ..launcher.command import DEFAULT_PORT, Layout, build
from ..strategies import ONE_PROCESS, STRATEGIES
from .mfu import machine_peak, model_flops

ARMS = ("stock", "fast")
ENTRY = ("-m", "orpo_dist.bench.arm")

EPILOG = """examples:
  orpo-dist bench                                  # SmolLM2-135M + LoRA on the bundled demo pairs
  orpo-dist bench --steps 3 --json bench.json --dataset_name ../shared/data/hh-rlhf-harmless-base/test.jsonl.gz \\
      --per_device_train_batch_size 8 --max_length 1024 --use_peft false
  orpo-dist bench --strategy zero3 --num-processes 2 --config tiny
"""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-dist bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe file or bundled name (default: smollm2-demo, SmolLM2-135M-Instruct + LoRA "
                   "on the bundled pairs)")
    p.add_argument("--steps", type=whole(1), default=3, help="measured optimizer steps per arm (default 3)")
    p.add_argument("--warmup", type=whole(0), default=1, help="steps per arm run first and not counted (default 1)")
    p.add_argument("--strategy", default=ONE_PROCESS, choices=STRATEGIES)
    p.add_argument("--num-processes", type=whole(1), default=1)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--timeout", type=positive, default=3600, help="seconds one step may take before giving up")
    return p


DEFAULT_RECIPE = "smollm2-demo"  # the bundled recipe `orpo-dist demo` runs


def _arm_command(arm: str, args, recipe: str, overrides: list[str], work: Path):
    steps = args.warmup + args.steps
    arm_args = [*overrides, "--orpo_step", arm, "--output_dir", str(work / arm), "--max_steps", str(steps),
                "--logging_steps", "1", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
                "--bench_dir", str(work), "--bench_arm", arm, "--bench_warmup", str(args.warmup)]
    port = DEFAULT_PORT + (17 if arm == "fast" else 0) + os.getpid() % 1000
    return build(args.strategy, Layout(args.num_processes, main_process_port=port), recipe, arm_args, entry=ENTRY)


def _wait(paths: list[Path], arm_waited: str, procs: dict, work: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not all(p.exists() for p in paths):
        for arm, proc in procs.items():
            # The other arm may have finished its last step and exited cleanly meanwhile.
            if proc.poll() is not None and (arm == arm_waited or proc.returncode != 0):
                tail = (work / f"{arm}.log").read_text()[-3000:]
                raise UserError(f"the {arm} arm exited with status {proc.returncode} before its step finished; "
                                f"the end of its log:\n{tail}")
        if time.time() > deadline:
            raise UserError(f"a step took longer than --timeout {timeout:.0f} s")
        time.sleep(0.05)


def _kill_arm(proc: subprocess.Popen, grace_s: float = 40.0) -> None:
    """Stop an arm's launcher and its ranks. torchrun starts each rank in a session of its own, so
    killing the launcher's group alone leaves them behind (holding their memory, waiting forever):
    SIGINT first, which torchrun passes on to its ranks and waits for; SIGKILL after `grace_s`."""
    import signal

    for signum, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(signum) if proc.poll() is None else None
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def summarise(work: Path, arm: str, warmup: int, steps: int, ranks: int, shape=None, peak=None) -> dict:
    """One arm's figures over its measured steps; with the model's shape and the machine's peak
    (mfu.py), its model FLOP/s and MFU too."""
    per_step = []
    for step in range(warmup + 1, warmup + steps + 1):
        records = [json.loads((work / f"done-{arm}-{step}-{r}.json").read_text()) for r in range(ranks)]
        per_step.append({"seconds": max(r["seconds"] for r in records), "pairs": sum(r["pairs"] for r in records),
                         "unique_tokens": sum(r["unique_tokens"] for r in records)})
    seconds = sum(s["seconds"] for s in per_step)
    peak_records = [json.loads((work / f"peak-{arm}-{r}.json").read_text()) for r in range(ranks)]
    peaks = [p["peak_gib"] for p in peak_records]
    known = [p for p in peaks if p is not None]  # None where /proc has no VmHWM (not Linux)
    cuda = [p["cuda_peak_gib"] for p in peak_records if p.get("cuda_peak_gib") is not None]  # GPUs only
    metrics = [json.loads(line) for line in (work / arm / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = {m["step"]: m["loss"] for m in metrics if "loss" in m and "train_runtime" not in m}
    flops = (sum(model_flops(shape, s["unique_tokens"], s["pairs"]) for s in per_step) / seconds
             if shape is not None else None)
    return {
        "model_flops_per_s": flops,
        "mfu": flops / peak.flops_per_s if flops is not None and peak is not None else None,
        "s_per_step": seconds / steps,
        "pairs_per_s": sum(s["pairs"] for s in per_step) / seconds,
        "unique_tokens_per_s": sum(s["unique_tokens"] for s in per_step) / seconds,
        "peak_gib": max(known) if known else None,
        "peak_gib_per_process": peaks,
        "cuda_peak_gib": max(cuda) if cuda else None,
        "steps": per_step,
        "losses": [losses.get(step) for step in range(1, warmup + steps + 1)],
    }


def _model_shape(values: dict):
    """The recipe's model shape for the model FLOPs (None, with a note, when it cannot be sized)."""
    from ..planner.inputs import inputs_from_recipe

    try:
        return inputs_from_recipe(values)[0]
    except UserError as err:
        print(f"orpo-dist bench: no model FLOPs / MFU: the model cannot be sized ({str(err).splitlines()[0]})")
        return None


def compare(stock: dict, fast: dict) -> dict:
    pairs = [(a, b) for a, b in zip(stock["losses"], fast["losses"]) if a is not None and b is not None]
    return {
        "speedup": fast["pairs_per_s"] / stock["pairs_per_s"],
        "memory_ratio": (fast["peak_gib"] / stock["peak_gib"]) if stock["peak_gib"] and fast["peak_gib"] else None,
        "cuda_memory_ratio": (fast["cuda_peak_gib"] / stock["cuda_peak_gib"])
        if stock.get("cuda_peak_gib") and fast.get("cuda_peak_gib") else None,
        "max_abs_loss_diff": max(abs(a - b) for a, b in pairs) if pairs else None,
    }


def format_table(result: dict) -> str:
    s, f = result["stock"], result["fast"]
    # (label, the figure of an arm's summary, format)
    rows = [("pairs / s", lambda a: a["pairs_per_s"], "{:.3f}"),
            ("unique tokens / s", lambda a: a["unique_tokens_per_s"], "{:.0f}"),
            ("s / step", lambda a: a["s_per_step"], "{:.2f}")]
    if s.get("mfu") is not None and f.get("mfu") is not None:
        rows += [("model GFLOP / s", lambda a: a["model_flops_per_s"] / 1e9, "{:.1f}"),
                 ("MFU %", lambda a: 100 * a["mfu"], "{:.1f}")]
    rows.append(("peak GiB / process", lambda a: a["peak_gib"], "{:.2f}"))
    if s.get("cuda_peak_gib") and f.get("cuda_peak_gib"):
        rows.append(("peak CUDA GiB / proc.", lambda a: a["cuda_peak_gib"], "{:.2f}"))
    lines = [f"{'':22}{'stock':>14}{'fast':>14}{'fast/stock':>12}"]
    for label, figure, fmt in rows:
        a, b = figure(s), figure(f)
        ratio = f"{b / a:.2f}x" if a and b else "-"
        lines.append(f"{label:22}{fmt.format(a) if a is not None else '-':>14}"
                     f"{fmt.format(b) if b is not None else '-':>14}{ratio:>12}")
    if result.get("peak_flops") and s.get("mfu") is not None:
        lines.append(f"MFU: model FLOPs (6 x non-embedding params x unique tokens + the head at the targets) "
                     f"against {result['peak_flops']['source']}")
    diff = result["max_abs_loss_diff"]
    lines.append(f"speedup {result['speedup']:.2f}x, memory ratio "
                 f"{result['memory_ratio']:.2f}" if result["memory_ratio"] else f"speedup {result['speedup']:.2f}x")
    lines.append(f"max |loss difference| over all steps: {diff:.2e}" if diff is not None else "no losses logged")
    return "\n".join(lines)


def is_bench_result(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"stock", "fast", "setup"} <= set(data)


def main(argv: list[str]) -> int:
    args, overrides = make_parser().parse_known_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be at least 1 and --warmup at least 0")
    from ..atomic import check_writable_file
    from ..recipe import check_without_hardware

    # Before minutes of benchmarking: the result can be written, and replaces only an earlier result.
    if args.json and check_writable_file(Path(args.json), "a bench result", "--json", ours=is_bench_result):
        print(f"orpo-dist bench: the result will replace {args.json} (an earlier bench result)", flush=True)

    with tempfile.TemporaryDirectory(prefix="orpo-bench-") as tmp:
        work = Path(tmp)
        recipe = args.config or DEFAULT_RECIPE
        shape = _model_shape(check_without_hardware(recipe, overrides))
        peak = machine_peak(args.num_processes)  # before the arms start: the machine is idle
        procs = {}
        try:  # from the first start: a signal (or a failure) at any point kills every arm it started
            for arm in ARMS:
                command = _arm_command(arm, args, recipe, overrides, work)
                with open(work / f"{arm}.log", "w") as log:  # the child keeps its own handle
                    # A session of its own: on failure the whole arm (launcher and every rank) is killed.
                    procs[arm] = subprocess.Popen(command.argv, env={**os.environ, **command.env}, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
            print(f"orpo-dist bench: stock and fast arms started ({args.strategy} x {args.num_processes}); "
                  f"{args.warmup} warm-up + {args.steps} measured step(s) each, in turn", flush=True)
            for step in range(1, args.warmup + args.steps + 1):
                for arm in (ARMS if step % 2 else ARMS[::-1]):
                    (work / f"go-{arm}-{step}").touch()
                    _wait([work / f"done-{arm}-{step}-{r}.json" for r in range(args.num_processes)], arm, procs,
                          work, args.timeout)
                    seconds = json.loads((work / f"done-{arm}-{step}-0.json").read_text())["seconds"]
                    tag = "warm-up" if step <= args.warmup else "step"
                    print(f"  {tag} {step}: {arm:5} {seconds:8.2f} s", flush=True)
            for arm, proc in procs.items():
                if proc.wait(timeout=600) != 0:
                    raise UserError(f"the {arm} arm exited with status {proc.returncode}; "
                                    f"its log:\n{(work / f'{arm}.log').read_text()[-3000:]}")
        except BaseException:
            for proc in procs.values():
                _kill_arm(proc)
            raise
        result = {arm: summarise(work, arm, args.warmup, args.steps, args.num_processes, shape, peak)
                  for arm in ARMS}
    result.update(compare(result["stock"], result["fast"]))
    result["peak_flops"] = {"flops_per_s": peak.flops_per_s, "source": peak.source}
    result["setup"] = {"config": args.config or "demo", "overrides": overrides, "strategy": args.strategy,
                       "num_processes": args.num_processes, "steps": args.steps, "warmup": args.warmup}
    print(format_table(result))
    if args.json:
        write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

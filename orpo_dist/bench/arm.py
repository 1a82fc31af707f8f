"""One arm of `orpo-dist bench`: an ordinary training run (train.run) paced step by step.

Per process: `python -m orpo_dist.bench.arm --bench_dir DIR --bench_arm NAME --config
RECIPE [overrides]`, alone or under `accelerate launch`. Before each optimizer step every rank
waits for DIR/go-NAME-STEP (written by the benchmark when the other arm is idle), then times the
step and writes DIR/done-NAME-STEP-RANK.json with its seconds, pairs and unique tokens. After the
warm-up steps the peak-RSS mark (and on a GPU the peak CUDA allocation) is reset, so the reported
peaks are those of the measured steps.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from ..orpo.fast.packing import unique_token_count


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def vm_hwm_gib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def cuda_peak_gib() -> float | None:
    """Peak CUDA memory the caching allocator handed out (None without a GPU): on a GPU the
    memory that matters; VmHWM is the host's."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def release_free_memory() -> None:
    """Hand freed heap back to the OS between steps, for both arms alike, so that an idle arm's
    leftovers do not crowd the other arm's step (glibc otherwise keeps them)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class Pacer(TrainerCallback):
    def __init__(self, bench_dir: Path, arm: str, warmup: int):
        self.dir, self.arm, self.warmup = bench_dir, arm, warmup
        self.pairs = self.tokens = 0
        self.started = 0.0

    def count_tokens(self, trainer) -> None:
        forward = trainer.policy_output

        def counting(model, batch):
            if model.training:
                self.pairs += int(batch["chosen_input_ids"].shape[0])
                self.tokens += unique_token_count(batch)
            return forward(model, batch)

        trainer.policy_output = counting

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step + 1
        go = self.dir / f"go-{self.arm}-{step}"
        while not go.exists():
            if not self.dir.is_dir():  # the bench ended (a signal, a failure): nobody will say go
                raise SystemExit(f"orpo-dist bench arm {self.arm}: the bench's folder {self.dir} is gone; stopping")
            time.sleep(0.02)
        if step == self.warmup + 1:
            reset_peak()
        self.pairs = self.tokens = 0
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self.started
        record = {"seconds": seconds, "pairs": self.pairs, "unique_tokens": self.tokens}
        path = self.dir / f"done-{self.arm}-{state.global_step}-{_rank()}.json"
        path.with_suffix(".tmp").write_text(json.dumps(record))
        path.with_suffix(".tmp").rename(path)
        release_free_memory()

    def on_train_end(self, args, state, control, **kwargs):
        path = self.dir / f"peak-{self.arm}-{_rank()}.json"
        path.write_text(json.dumps({"peak_gib": vm_hwm_gib(), "cuda_peak_gib": cuda_peak_gib()}))


def _take(argv: list[str], flag: str) -> str:
    index = argv.index(flag)
    value = argv[index + 1]
    del argv[index:index + 2]
    return value


def main(argv: list[str]) -> int:
    from ..recipe import parse
    from ..train import run

    argv = list(argv)
    bench_dir, arm, warmup = Path(_take(argv, "--bench_dir")), _take(argv, "--bench_arm"), int(_take(argv, "--bench_warmup"))
    pacer = Pacer(bench_dir, arm, warmup)
    run(parse(argv), extra_callbacks=[pacer], on_trainer=pacer.count_tokens, save_model=False)
    return 0


if __name__ == "__main__":
    from ..errors import UserError

    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as err:
        print(f"orpo-dist bench arm: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)

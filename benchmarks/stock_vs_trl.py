"""orpo-dist's own ORPO steps against TRL's experimental ORPOTrainer, on the same batch, in one run.

    .venv/bin/python benchmarks/stock_vs_trl.py --steps 3 --dataset_name ../shared/data/hh-rlhf-harmless-base/test.jsonl.gz \
        --per_device_train_batch_size 4 --max_length 512

Builds the three arms on copies of one model (the recipe's: by default the demo's, SmolLM2-135M +
LoRA): TRL's trainer, orpo-dist's with the padded forward ("stock", TRL's algorithm) and with the
fast forward. One warm-up step each, then `--steps` rounds in which every arm takes one training
step (forward, backward, optimizer) on the same batch, the arms' order rotating each round, so
machine load drifts over all alike. Prints each arm's median seconds per step, its ratio to TRL's,
and the loss of its first step against TRL's: orpo-dist's stock step replaces TRL's at the same
cost and with the same loss, and the fast step's ratio is the one `orpo-dist bench` reports.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from orpo_step_profile import build

ARMS = ("trl", "stock", "fast")


def main(argv: list[str]) -> int:
    steps = 3
    if "--steps" in argv:
        i = argv.index("--steps")
        steps, argv = int(argv[i + 1]), argv[:i] + argv[i + 2:]
    trainers, batch, training, _ = build(argv, ARMS)
    optimizers, first_loss, seconds = {}, {}, {arm: [] for arm in ARMS}
    for arm, trainer in trainers.items():
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call training_step alone
        optimizers[arm] = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=1e-5)
        first_loss[arm] = float(trainer.training_step(trainer.model, batch))  # warm-up, and the same start
        optimizers[arm].zero_grad(set_to_none=True)
    for round_ in range(steps):
        for arm in ARMS[round_ % 3:] + ARMS[:round_ % 3]:
            trainer = trainers[arm]
            start = time.perf_counter()
            trainer.training_step(trainer.model, batch)
            optimizers[arm].step()
            optimizers[arm].zero_grad(set_to_none=True)
            seconds[arm].append(time.perf_counter() - start)
    n = training.per_device_train_batch_size
    print(f"batch {n}, max_length {training.max_length}, {steps} measured step(s) per arm, same batch, one process")
    print(f"{'arm':8}{'s/step':>10}{'vs TRL':>9}{'first loss':>14}{'|diff| vs TRL':>15}")
    trl = statistics.median(seconds["trl"])
    for arm in ARMS:
        median = statistics.median(seconds[arm])
        print(f"{arm:8}{median:10.2f}{trl / median:8.2f}x{first_loss[arm]:14.6f}"
              f"{abs(first_loss[arm] - first_loss['trl']):15.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

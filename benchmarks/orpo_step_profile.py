"""Where one ORPO step's time goes, stock (the padded forward, TRL's algorithm) against fast, on the same batch.

    .venv/bin/python benchmarks/orpo_step_profile.py --dataset_name ../shared/data/hh-rlhf-harmless-base/test.jsonl.gz \
        --per_device_train_batch_size 8 --max_length 1024 --use_peft false

`--arm fast` (or stock, or trl: TRL's experimental ORPOTrainer, the reference) profiles one step
only, when both models and the profiler's records do not fit in memory together (batch 8 at
max_length 1024 on 24 GiB).

Runs one recipe (default: the demo's) in one process with both steps on copies of one model and
the same batch, one warm-up step each, then one profiled step each (torch.profiler, CPU self
time; the optimizer step timed apart). Operators are put in buckets: attention (SDPA and its backward), vocabulary head (matrix
products with a vocabulary-sized operand, log-softmax / log-sum-exp / cross-entropy), other
matrix products (projections and MLP), optimizer (Adam's foreach ops), and the rest (norms,
rotary, activations, copies, the fast step's packing). Prints a table of seconds and shares.
"""

from __future__ import annotations

import copy
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

ATTENTION = ("scaled_dot_product", "_flash_attention", "_efficient_attention", "sdpa")
HEAD_OPS = ("log_softmax", "logsumexp", "nll_loss", "cross_entropy", "_softmax_backward", "gather")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def bucket(event, vocab: int) -> str:
    name = event.key.lower() if hasattr(event, "key") else event.name.lower()
    if any(k in name for k in ATTENTION):
        return "attention"
    shapes = getattr(event, "input_shapes", None) or []
    if any(k in name for k in HEAD_OPS) or any(vocab in (s or []) for s in shapes):
        return "vocabulary-sized"
    if any(name == k for k in MATMUL):
        return "projections + MLP"
    return "other"


def one_step(trainer, model, optimizer, batch):
    loss = trainer.training_step(model, batch)
    start = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss), time.perf_counter() - start


def profile_step(trainer, batch, vocab: int) -> tuple[dict[str, float], float, float, list]:
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call training_step alone
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    one_step(trainer, model, optimizer, batch)  # warm-up: allocator, optimizer state
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        loss = float(trainer.training_step(model, batch))
    wall = time.perf_counter() - start
    _, optimizer_s = one_step(trainer, model, optimizer, batch)  # the optimizer, timed on its own
    buckets: dict[str, float] = {"optimizer": optimizer_s}
    other = []
    for event in prof.key_averages(group_by_input_shape=True):
        key = bucket(event, vocab)
        buckets[key] = buckets.get(key, 0.0) + event.self_cpu_time_total / 1e6
        if key == "other":
            other.append((event.self_cpu_time_total / 1e6, event.key))
    return buckets, wall + optimizer_s, loss, sorted(other, reverse=True)[:4]


def build(argv: list[str], arms=("stock", "fast")):
    """(trainers by arm, one collated batch, training args, vocab size) for a recipe's overrides:
    the arms' steps on copies of one model. Arms: stock and fast (orpo-dist's trainer with each
    forward) and trl (TRL's experimental ORPOTrainer, the reference). Shared with
    benchmarks/activation_memory.py and benchmarks/stock_vs_trl.py."""
    import dataclasses

    from datasets import Dataset  # noqa: F401  (loads before TRL's lazy imports)

    from orpo_dist.data import prepare_datasets
    from orpo_dist.demo import DEMO_RECIPE
    from orpo_dist.model import load_model, load_tokenizer, peft_config
    from orpo_dist.orpo import OrpoTrainer
    from orpo_dist.recipe import parse

    recipe = parse(["--output_dir", "/tmp/orpo-profile", "--report_to", "none", *argv], defaults=DEMO_RECIPE)
    training = recipe.training
    tokenizer = load_tokenizer(recipe.model, training)
    data = prepare_datasets(recipe.data, tokenizer, training.max_length, training.seed, log=lambda m: None)
    model = load_model(recipe.model, training)
    lora = peft_config(model, recipe.model)
    def ours(step):
        return OrpoTrainer(model=copy.deepcopy(model), args=dataclasses.replace(training, orpo_step=step),
                           train_dataset=data.train, processing_class=tokenizer, peft_config=lora)

    def trl():
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        names = {f.name for f in dataclasses.fields(ORPOConfig) if f.init} - {"logging_dir"}
        args = ORPOConfig(**{n: getattr(training, n) for n in names if hasattr(training, n)})
        return ORPOTrainer(model=copy.deepcopy(model), args=args, train_dataset=data.train,
                           processing_class=tokenizer, peft_config=lora)

    builders = {"stock": lambda: ours("stock"), "fast": lambda: ours("fast"), "trl": trl}
    trainers = {arm: builders[arm]() for arm in arms}
    del model
    first = next(iter(trainers.values()))
    n = training.per_device_train_batch_size
    batch = first.data_collator([first.train_dataset[i] for i in range(n)])
    return trainers, batch, training, first.model.config.vocab_size


def main(argv: list[str]) -> int:
    arms = ("stock", "fast")
    if "--arm" in argv:  # one arm only: both models plus the profiler's records may not fit in memory
        i = argv.index("--arm")
        arms, argv = (argv[i + 1],), argv[:i] + argv[i + 2:]
    trainers, batch, training, vocab = build(argv, arms)
    n = training.per_device_train_batch_size
    results = {arm: profile_step(t, batch, vocab) for arm, t in trainers.items()}
    empty = ({}, 0.0, float("nan"), [])
    results = {arm: results.get(arm, empty) for arm in ("stock", "fast")}
    names = ["attention", "projections + MLP", "vocabulary-sized", "optimizer", "other"]
    print(f"one step, batch {n}, max_length {training.max_length}: seconds of CPU self time by bucket "
          "(profiler overhead included; wall time below)")
    print(f"{'':20}{'stock':>10}{'share':>8}{'fast':>10}{'share':>8}")
    totals = {arm: sum(r[0].values()) or float("nan") for arm, r in results.items()}
    for name in names:
        s, f = results["stock"][0].get(name, 0.0), results["fast"][0].get(name, 0.0)
        print(f"{name:20}{s:10.2f}{s / totals['stock']:8.0%}{f:10.2f}{f / totals['fast']:8.0%}")
    print(f"{'total (CPU)':20}{totals['stock']:10.2f}{'':8}{totals['fast']:10.2f}")
    print(f"{'wall time':20}{results['stock'][1]:10.2f}{'':8}{results['fast'][1]:10.2f}")
    for arm in ("stock", "fast"):
        print(f"largest 'other' ops, {arm}: " + ", ".join(f"{name} {sec:.2f}s" for sec, name in results[arm][3]))
    print(f"loss: stock {results['stock'][2]:.6f}, fast {results['fast'][2]:.6f}")
    if "fast" not in trainers:
        return 0
    packed = trainers["fast"].forward.last_packed
    stock_tokens = batch["chosen_input_ids"].numel() + batch["rejected_input_ids"].numel()
    print(f"tokens through the model: stock {stock_tokens}, fast {packed.input_ids.numel()} "
          f"({packed.input_ids.shape[0]} rows x {packed.input_ids.shape[1]}), unique {packed.unique_tokens}; "
          f"head positions: stock {stock_tokens}, fast {packed.target_tokens.numel()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

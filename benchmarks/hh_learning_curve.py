"""Issue 20's learning curve: held-out preference accuracy against training pairs seen, on real
human preferences (recipe hh-rlhf-smollm2: HH-RLHF harmless-base file rows 0-1534 trained, the
rest held out).

    .venv/bin/python benchmarks/hh_learning_curve.py [--output_dir runs/hh-curve] [--every 48]
                                                     [--max-pairs N] [--no-train]

Trains the recipe once, as `orpo-dist demo --data hh` does, keeping a checkpoint every `--every`
steps (the same run: saving does not change the weights or the data order), then scores the base
model once and every checkpoint on the run's held-out pairs with `orpo-dist eval`'s scorer.
Writes curve.json, curve.md (the table) and curve.png (accuracy with its bootstrap 95% interval
against pairs seen) into the run folder, and prints the table. `--no-train` re-scores an existing
run. Measured on 2 CPU cores: 26 min of training, 23 min of scoring (base + 4 checkpoints,
about 4.5 min each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RECIPE = "hh-rlhf-smollm2"
CURVE_FILES = ("curve.json", "curve.md", "curve.png")


def train(output_dir: Path, every: int, overrides: list[str]) -> int:
    """Train the recipe with a checkpoint every `every` steps; returns the number of training pairs."""
    from orpo_dist.recipe import parse
    from orpo_dist.train import run

    recipe = parse(["--config", RECIPE, "--output_dir", str(output_dir), "--save_strategy", "steps",
                    "--save_steps", str(every), "--save_total_limit", "1000", *overrides])
    seen = {}
    run(recipe, on_trainer=lambda trainer: seen.update(pairs=len(trainer.train_dataset)))
    (output_dir / "curve-run.json").write_text(json.dumps({"train_pairs": seen["pairs"]}) + "\n")
    return seen["pairs"]


def score_all(output_dir: Path, max_pairs: int | None) -> tuple[dict, list[dict]]:
    """(base figures, [figures per checkpoint, with step and pairs seen]), all on the same pairs."""
    from peft import PeftModel

    from orpo_dist.eval.cli import score
    from orpo_dist.eval.models import load_run_recipe
    from orpo_dist.eval.pairs import read_pairs
    from orpo_dist.eval.scoring import tokenize_pairs
    from orpo_dist.eval.stats import summarise
    from orpo_dist.model import load_model, load_tokenizer
    from orpo_dist.run_folder import HELDOUT_FILE, checkpoint_step, checkpoints

    recipe = load_run_recipe(output_dir)
    training = recipe.training
    tokenizer = load_tokenizer(recipe.model, training)
    rows = read_pairs(output_dir / HELDOUT_FILE, max_pairs)
    tokenized, empty = tokenize_pairs(tokenizer, rows, training.max_length, training.max_prompt_length)
    tokenized = [t for i, t in enumerate(tokenized) if i not in set(empty)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def figures(model, desc):
        f = summarise(*score(model.eval(), tokenized, pad, desc))
        f.pop("gaps")
        return f

    base = figures(load_model(recipe.model, training), "scoring base")
    info = output_dir / "curve-run.json"
    train_pairs = json.loads(info.read_text())["train_pairs"] if info.is_file() else None
    batch = training.per_device_train_batch_size * training.gradient_accumulation_steps
    points = []
    for folder in checkpoints(output_dir):
        step = checkpoint_step(folder)
        model = PeftModel.from_pretrained(load_model(recipe.model, training), folder)
        pairs_seen = step * batch if train_pairs is None else min(step * batch, train_pairs)
        points.append({"step": step, "pairs_seen": pairs_seen, **figures(model, f"scoring {folder.name}")})
    return base, points


def table(base: dict, points: list[dict]) -> str:
    lines = ["| pairs seen | step | accuracy [95% interval] | gap (chosen - rejected log-prob) |",
             "|---:|---:|---|---:|"]
    for p in [{"pairs_seen": 0, "step": 0, **base}, *points]:
        low, high = p["accuracy_ci95"]
        lines.append(f"| {p['pairs_seen']} | {p['step']} | {p['accuracy']:.1%} [{low:.1%}, {high:.1%}] "
                     f"| {p['gap']:+.3f} |")
    return "\n".join(lines)


def plot(base: dict, points: list[dict], path: Path, pairs: int) -> Path:
    from orpo_dist.report.plots import _pyplot, _save

    plt = _pyplot()
    every = [{"pairs_seen": 0, **base}, *points]
    x = [p["pairs_seen"] for p in every]
    y = [100 * p["accuracy"] for p in every]
    err = [[100 * (p["accuracy"] - p["accuracy_ci95"][0]) for p in every],
           [100 * (p["accuracy_ci95"][1] - p["accuracy"]) for p in every]]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label="held-out accuracy, 95% interval")
    ax.axhline(100 * base["accuracy"], color="grey", linestyle=":", label="base model")
    ax.axhline(50, color="black", linewidth=0.5)
    ax.set_xlabel("training pairs seen")
    ax.set_ylabel("preference accuracy (%)")
    ax.set_title(f"SmolLM2-135M + ORPO (LoRA) on HH-RLHF harmless, {pairs} held-out pairs")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="runs/hh-curve")
    p.add_argument("--every", type=int, default=48, help="steps between checkpoints (48 steps = 384 pairs)")
    p.add_argument("--max-pairs", type=int, help="score only the first N held-out pairs")
    p.add_argument("--no-train", action="store_true", help="score an existing run's checkpoints")
    args, overrides = p.parse_known_args(argv)

    out = Path(args.output_dir)
    started = time.time()
    if not args.no_train:
        train(out, args.every, overrides)
    trained_at = time.time()
    base, points = score_all(out, args.max_pairs)
    text = table(base, points)
    (out / "curve.json").write_text(json.dumps({"base": base, "points": points}, indent=2) + "\n")
    (out / "curve.md").write_text(text + "\n")
    plot(base, points, out / "curve.png", base["pairs"])
    print(text)
    print(f"training {trained_at - started:.0f} s, scoring {time.time() - trained_at:.0f} s; "
          f"written: {', '.join(str(out / f) for f in CURVE_FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Scoring held-out pairs: the plain way (one padded batch of 8 answers after another, full logits,
what `orpo-dist eval` did before) against eval's scorer (the fast step's packed forward, pairs
grouped by length, the head only at answer positions), on the same model and pairs, in one run.

    .venv/bin/python benchmarks/eval_speed.py [--pairs 768] [--max-length 1024] [--data FILE]

Default: SmolLM2-135M-Instruct on the first 768 pairs of ../shared/data/hh-rlhf-harmless-base,
rendered with its chat template. Prints seconds for each way (one model; `orpo-dist eval` scores
two, base and trained) and the largest difference between their per-pair log-probs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=768)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--data", default=str(HH))
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orpo_dist.builtin_models import ensure_demo_model
    from orpo_dist.data import prepare_datasets
    from orpo_dist.eval.scoring import pair_logps, padded_pair_logps, tokenize_pairs
    from orpo_dist.recipe import parse

    model_dir = ensure_demo_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    recipe = parse(["--model_name_or_path", str(model_dir), "--dataset_name", args.data, "--output_dir", "/tmp/x",
                    "--eval_split_size", "0", "--max_length", str(args.max_length), "--report_to", "none"])
    data = prepare_datasets(recipe.data, tokenizer, args.max_length, 42, log=lambda m: None)
    rows = [data.train[i] for i in range(min(args.pairs, len(data.train)))]
    tokenized, empty = tokenize_pairs(tokenizer, rows, args.max_length)
    tokenized = [t for i, t in enumerate(tokenized) if i not in set(empty)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id
    print(f"{len(tokenized)} pairs, max_length {args.max_length}, {torch.get_num_threads()} threads", flush=True)

    start = time.perf_counter()
    fast_c, fast_r = pair_logps(model, tokenized, pad)
    fast_s = time.perf_counter() - start
    print(f"eval's scorer (packed, grouped by length, head at answers): {fast_s:.1f} s", flush=True)
    start = time.perf_counter()
    plain_c, plain_r = padded_pair_logps(model, tokenized, pad, batch_size=8)
    plain_s = time.perf_counter() - start
    print(f"plain (padded batches of 8 answers, full logits):            {plain_s:.1f} s", flush=True)
    diff = max(abs(a - b) for a, b in zip(fast_c + fast_r, plain_c + plain_r))
    print(f"speed-up {plain_s / fast_s:.2f}x; largest per-pair log-prob difference {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

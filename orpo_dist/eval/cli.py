"""`orpo-dist eval RUN_DIR`: base model vs trained model on held-out pairs, side by side.

Scores every held-out pair (mean per-token log-prob of chosen and rejected, preference accuracy,
mean gap) for both models, prints a table and greedy generations for a few probe prompts, and
writes it all to RUN_DIR/eval.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from ..run_folder import EVAL_FILE, HELDOUT_FILE, RECIPE_FILE
from .generation import DEFAULT_PROMPTS, generate
from .scoring import score_pairs


def load_run_recipe(run_dir: Path):
    import torch

    from ..recipe import parse

    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not an orpo-dist run folder (no {RECIPE_FILE}); pass the --output_dir of a run")
    overrides = [] if torch.cuda.is_available() else ["--bf16", "false", "--fp16", "false"]
    return parse(["--config", str(path), *overrides])


def read_pairs(path: Path, limit: int | None) -> list[dict]:
    if not path.is_file():
        raise UserError(f"no held-out pairs at {path}: the run had no eval split; pass --pairs FILE.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise UserError(f"{path} holds no pairs")
    return rows[:limit] if limit else rows


def load_models(recipe, run_dir: Path):
    """(base, trained): the recipe's starting model, and the run's saved model or adapter on top of it."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..model import load_model

    base = load_model(recipe.model, recipe.training).eval()
    if (run_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        trained = PeftModel.from_pretrained(load_model(recipe.model, recipe.training), run_dir).eval()
    elif (run_dir / "config.json").is_file():
        dtype = next(base.parameters()).dtype
        trained = AutoModelForCausalLM.from_pretrained(run_dir, dtype=dtype).eval()
    else:
        raise UserError(f"{run_dir} holds no saved model or adapter: did the run finish?")
    if torch.cuda.is_available():
        base, trained = base.to("cuda"), trained.to("cuda")
    return base, trained


def evaluate_run(run_dir: str | Path, pairs_file: str | None = None, max_pairs: int | None = None,
                 prompts=DEFAULT_PROMPTS, batch_size: int = 8, max_new_tokens: int = 48) -> dict:
    from ..model import load_tokenizer

    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir)
    rows = read_pairs(Path(pairs_file) if pairs_file else run_dir / HELDOUT_FILE, max_pairs)
    tokenizer = load_tokenizer(recipe.model, recipe.training)
    base, trained = load_models(recipe, run_dir)
    max_length = recipe.training.max_length
    result = {
        "run": str(run_dir),
        "base_model": recipe.model.model_name_or_path,
        "pairs": len(rows),
        "base": score_pairs(base, tokenizer, rows, batch_size, max_length).to_dict(),
        "trained": score_pairs(trained, tokenizer, rows, batch_size, max_length).to_dict(),
    }
    if prompts:
        base_answers = generate(base, tokenizer, prompts, max_new_tokens)
        trained_answers = generate(trained, tokenizer, prompts, max_new_tokens)
        result["generations"] = [
            {"prompt": p, "base": b, "trained": t} for p, b, t in zip(prompts, base_answers, trained_answers)
        ]
    (run_dir / EVAL_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict) -> str:
    b, t = result["base"], result["trained"]
    lines = [
        f"held-out preference pairs: {result['pairs']}  (base model: {result['base_model']})",
        f"{'':34}{'base':>10}{'trained':>10}",
        f"{'chosen   mean log-prob per token':34}{b['chosen_logp']:>10.3f}{t['chosen_logp']:>10.3f}",
        f"{'rejected mean log-prob per token':34}{b['rejected_logp']:>10.3f}{t['rejected_logp']:>10.3f}",
        f"{'preference accuracy':34}{b['accuracy']:>10.1%}{t['accuracy']:>10.1%}",
        f"{'mean gap (chosen - rejected)':34}{b['gap']:>+10.3f}{t['gap']:>+10.3f}",
    ]
    for g in result.get("generations", []):
        lines += ["", f"prompt:  {g['prompt']}", f"  base:    {_one_line(g['base'])}",
                  f"  trained: {_one_line(g['trained'])}"]
    return "\n".join(lines)


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orpo-dist eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="output folder of an orpo-dist run (holds recipe.yaml and the model)")
    parser.add_argument("--pairs", help="JSONL of prompt/chosen/rejected to score (default: the run's heldout.jsonl)")
    parser.add_argument("--max-pairs", type=int, help="score at most this many pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--prompt", action="append", dest="prompts",
                        help="probe prompt for greedy generation (repeatable; default: three built-in probes)")
    parser.add_argument("--no-generate", action="store_true", help="skip the greedy generations")
    args = parser.parse_args(argv)
    prompts = () if args.no_generate else tuple(args.prompts or DEFAULT_PROMPTS)
    result = evaluate_run(args.run_dir, args.pairs, args.max_pairs, prompts, args.batch_size, args.max_new_tokens)
    print(format_result(result))
    print(f"\nwritten to {Path(args.run_dir) / EVAL_FILE}")
    return 0

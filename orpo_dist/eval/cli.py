"""`orpo-dist eval TARGET`: the base model against the trained one, on held-out pairs and probes.

TARGET is a run folder (the saved adapter or model), one of its checkpoint-N folders, a merged model
folder or a GGUF file (what `orpo-dist export` writes; the base is then the model of the run it lies
in, or --base). For both models: preference accuracy on the pairs with a bootstrap 95% interval,
the mean chosen-minus-rejected log-prob gap and its distribution (one histogram), figures per
category when the pairs have a category or source column, greedy generations for probe prompts,
and the refusal rate on the probes marked harmful. Written to eval.json and eval.md (with plots/eval-gap-histogram.png)
in the run folder the target lies in, or in --out (which a model in no run needs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..atomic import write_text
from ..arg_types import whole
from ..errors import UserError
from ..run_folder import EVAL_FILE, EVAL_REPORT_FILE, HELDOUT_FILE
from .pairs import read_pairs
from .probes import DEFAULT_PROBES, is_refusal, read_probes, refusal_rate


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pair", dynamic_ncols=True, mininterval=1.0)


def score(model, tokenized, pad_token_id: int, desc: str) -> tuple[list[float], list[float]]:
    from .scoring import pair_logps

    with _progress(len(tokenized), desc) as bar:
        return pair_logps(model, tokenized, pad_token_id, progress=bar.update)


def is_eval_report(path: Path) -> bool:
    """Is `path` an eval.json that `orpo-dist eval` wrote (and may replace)?"""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"base", "trained", "pairs"} <= set(data)


def evaluate(target: str | Path, pairs_file: str | None = None, max_pairs: int | None = None,
             probes=DEFAULT_PROBES, max_new_tokens: int = 48, base: str | None = None,
             out: str | Path | None = None) -> dict:
    from ..report.plots import gap_histogram
    from .generation import generate
    from .models import load, resolve_target
    from .summary import histogram_path, write_markdown
    from .scoring import tokenize_pairs
    from .stats import by_category, category_column, summarise

    from ..atomic import check_writable_file

    started = time.time()
    where = resolve_target(target)
    if where.kind == "run":
        from ..run_lock import training_note

        if note := training_note(where.path):
            print(f"orpo-dist eval: {note}", flush=True)
    if out is None and where.run_dir is None:
        raise UserError(f"{where.path} lies in no orpo-dist run, so the report (eval.json, eval.md, plots/) has no "
                        "run folder to go to and would be written among that model's files: pass --out FOLDER"
                        + ("" if base else ", and --base MODEL to compare it with (a hub name, a folder or a .gguf)"))
    folder = Path(out) if out else where.report_dir
    pairs_path = Path(pairs_file) if pairs_file else (where.run_dir or where.report_dir) / HELDOUT_FILE
    rows = read_pairs(pairs_path, max_pairs, given=bool(pairs_file))
    # Before minutes of scoring: the report can be written, and replaces only an earlier report
    # (eval.md and the histogram only beside the eval.json they were written with).
    earlier = check_writable_file(folder / EVAL_FILE, "an eval report", "--out", ours=is_eval_report)
    for other in (folder / EVAL_REPORT_FILE, histogram_path(folder)):
        if (other.exists() or other.is_symlink()) and not earlier:
            raise UserError(f"{other} exists and was not written by orpo-dist eval (no eval report beside it): "
                            "move it away or give another --out (nothing was written)")
    if earlier:
        print(f"orpo-dist eval: the report will replace {folder / EVAL_FILE} (an earlier eval)", flush=True)
    tokenizer, base_model, trained_model, settings = load(where, base)
    tokenized, empty = tokenize_pairs(tokenizer, rows, settings["max_length"], settings["max_prompt_length"])
    if empty:
        rows = [row for i, row in enumerate(rows) if i not in set(empty)]
        if not rows:
            raise UserError(f"every pair's prompt fills max_length {settings['max_length']}: nothing to score")
    pad = tokenizer.pad_token_id
    scores = {"base": score(base_model, tokenized, pad, "scoring base"),
              "trained": score(trained_model, tokenized, pad, "scoring trained")}
    result = {"target": str(where.path), "kind": where.kind, "base_model": settings["base_model"],
              "pairs_file": str(pairs_path), "pairs": len(rows), "skipped": len(empty)}
    figures = {name: summarise(*s) for name, s in scores.items()}
    result["gaps"] = {name: f.pop("gaps") for name, f in figures.items()}
    result.update(figures)
    column = category_column(rows)
    if column:
        result["by_category"] = {"column": column,
                                 **{name: by_category(rows, column, *s) for name, s in scores.items()}}
    if probes:
        answers = {name: generate(m, tokenizer, [p.prompt for p in probes], max_new_tokens)
                   for name, m in (("base", base_model), ("trained", trained_model))}
        result["generations"] = [
            {"prompt": p.prompt, "harmful": p.harmful, "base": b, "trained": t,
             "base_refused": is_refusal(b), "trained_refused": is_refusal(t)}
            for p, b, t in zip(probes, answers["base"], answers["trained"])]
        if any(p.harmful for p in probes):
            result["refusal_rate"] = {name: refusal_rate(probes, a) for name, a in answers.items()}
    result["seconds"] = round(time.time() - started, 1)
    # eval.json first: it is what marks the folder's eval.md and histogram as this command's (an
    # eval stopped between the three writes never leaves a report the next eval would refuse).
    result["report"] = str(folder / EVAL_REPORT_FILE)
    path = folder / EVAL_FILE
    write_text(path, json.dumps(result, indent=2) + "\n")
    result["json"] = str(path)
    histogram = gap_histogram(result["gaps"]["base"], result["gaps"]["trained"], histogram_path(folder))
    write_markdown(result, folder, histogram)
    return result


def evaluate_run(run_dir, pairs_file=None, max_pairs=None, probes=DEFAULT_PROBES, max_new_tokens=48):
    """The demo's call: a run folder scored on its own held-out pairs."""
    return evaluate(run_dir, pairs_file, max_pairs, probes, max_new_tokens)


def main(argv: list[str]) -> int:
    from .summary import format_result

    parser = argparse.ArgumentParser(prog="orpo-dist eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a run folder, a checkpoint (RUN/checkpoint-N), a model folder "
                        "(e.g. RUN/export/merged) or a .gguf file")
    parser.add_argument("--base", help="base model to compare with (default: the model of the run TARGET lies in)")
    parser.add_argument("--pairs", help="JSONL of rendered prompt/chosen/rejected (optional category or source "
                        "column) to score (default: the run's heldout.jsonl)")
    parser.add_argument("--max-pairs", type=whole(1), help="score at most this many pairs")
    parser.add_argument("--max-new-tokens", type=whole(1), default=48)
    parser.add_argument("--prompts", help='probe file: JSONL of {"prompt": ..., "harmful": true|false}, or one '
                        "prompt per line, or `harmful` for the bundled set of 10 harmful and 2 harmless requests (default: an "
                        "instruction, a harmful request, a factual question)")
    parser.add_argument("--prompt", action="append", dest="prompt_list",
                        help="a probe prompt (repeatable; instead of the default probes)")
    parser.add_argument("--no-generate", action="store_true", help="skip the greedy generations")
    parser.add_argument("--out", metavar="DIR", help="write eval.json, eval.md and plots/ there (default: the run "
                        "folder the target lies in; a model or GGUF file in no run needs --out)")
    args = parser.parse_args(argv)
    from .probes import Probe

    if args.no_generate:
        probes = ()
    elif args.prompts:
        probes = read_probes(args.prompts)
    elif args.prompt_list:
        probes = tuple(Probe(p) for p in args.prompt_list)
    else:
        probes = DEFAULT_PROBES
    result = evaluate(args.target, args.pairs, args.max_pairs, probes, args.max_new_tokens, args.base, args.out)
    print(format_result(result))
    print(f"\nwritten to {result['json']} and {result['report']} ({result['seconds']:.0f} s)")
    return 0

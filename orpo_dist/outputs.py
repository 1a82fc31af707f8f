"""What a run leaves beside the model: resolved recipe, package versions, model card."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from .atomic import write_text
from .model_rules import method_label, training_method
from .recipe import Recipe, write_resolved
from .run_folder import METRICS_FILE, MODEL_CARD_FILE, RECIPE_FILE, VERSIONS_FILE, read_metrics

PACKAGES = ("orpo-dist", "torch", "trl", "transformers", "peft", "accelerate", "deepspeed",
            "bitsandbytes", "datasets", "submitit")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_run_info(recipe: Recipe, output_dir: Path, world_size: int, device: str) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    write_resolved(recipe, output_dir / RECIPE_FILE)
    info = {"packages": package_versions(), "world_size": world_size, "device": device}
    write_text(output_dir / VERSIONS_FILE, json.dumps(info, indent=2) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, written under a temporary name and renamed when complete."""
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def final_train_metrics(output_dir: Path) -> dict:
    """The last logged values of each ORPO metric (training logs, not the run summary)."""
    last: dict = {}
    for record in read_metrics(output_dir):
        if "train_runtime" in record:
            continue
        last.update({k: v for k, v in record.items() if isinstance(v, (int, float))})
    return last


def write_model_card(recipe: Recipe, output_dir: Path, is_adapter: bool, plots_markdown: str = "") -> None:
    m, d, t = recipe.model, recipe.data, recipe.training
    metrics = final_train_metrics(output_dir)
    method = method_label(training_method(m.use_peft, m.load_in_4bit, m.load_in_8bit))
    rows = "\n".join(
        f"| {k} | {metrics[k]:.4f} |"
        for k in ("loss", "nll_loss", "log_odds_ratio", "rewards/chosen", "rewards/rejected",
                  "rewards/margins", "rewards/accuracies")
        if k in metrics
    )
    load = (
        f"from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained(\"{output_dir}\")"
        if is_adapter
        else f"from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(\"{output_dir}\")"
    )
    curves = f"## Training curves\n\n{plots_markdown}\n\n" if plots_markdown else ""
    card = f"""---
base_model: {m.model_name_or_path}
library_name: {"peft" if is_adapter else "transformers"}
tags: [orpo, trl, orpo-dist]
---

# {output_dir.name}

ORPO ({method}) of `{m.model_name_or_path}` on `{d.dataset_name}`, trained with
[orpo-dist](https://pypi.org/project/orpo-dist/)'s own ORPO trainer.

- beta {t.beta}, learning rate {t.learning_rate}, {t.num_train_epochs} epoch(s), max_steps {t.max_steps}
- per-device batch {t.per_device_train_batch_size} x gradient accumulation {t.gradient_accumulation_steps}
- max_length {t.max_length}, precision {"bf16" if t.bf16 else "fp16" if t.fp16 else "fp32"}

## Last logged training metrics (step {metrics.get("step", "?")})

| metric | value |
|---|---|
{rows}

{curves}Every logged step is in `{METRICS_FILE}` (`orpo-dist report {output_dir}` redraws the curves); the full recipe in `{RECIPE_FILE}` (rerun with
`orpo-dist train --config {RECIPE_FILE}`); package versions in `{VERSIONS_FILE}`.

## Load

```python
{load}
```
"""
    write_text(output_dir / MODEL_CARD_FILE, card)

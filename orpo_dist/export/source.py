"""What a run folder holds for export: its recipe, what kind of model it saved, its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

ADAPTER_CONFIG = "adapter_config.json"   # written by PEFT for LoRA / QLoRA runs
MODEL_CONFIG = "config.json"             # written by transformers for full fine-tuning runs


@dataclass
class RunSource:
    run_dir: Path
    recipe: object
    kind: str  # "lora", "qlora" or "full"

    @property
    def is_adapter(self) -> bool:
        return self.kind != "full"

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name


def inspect_run(run_dir: str | Path) -> RunSource:
    from ..eval.models import load_run_recipe

    from ..run_folder import require_run_folder

    from ..pickle_scan import MODEL_FIX, check_pickles

    run_dir = require_run_folder(run_dir)
    check_pickles(run_dir, MODEL_FIX)
    recipe = load_run_recipe(run_dir)
    if (run_dir / ADAPTER_CONFIG).is_file():
        quantised = recipe.model.load_in_4bit or recipe.model.load_in_8bit
        return RunSource(run_dir, recipe, "qlora" if quantised else "lora")
    if (run_dir / MODEL_CONFIG).is_file():
        return RunSource(run_dir, recipe, "full")
    from ..run_lock import refuse_while_training

    refuse_while_training(run_dir, "`orpo-dist export`")
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    hint = (f"it has checkpoints up to {checkpoints[-1].name}: finish it with "
            f"`orpo-dist train --config {run_dir / 'recipe.yaml'} --resume`" if checkpoints
            else "did the run finish?")
    raise UserError(f"{run_dir} holds no saved model or adapter ({ADAPTER_CONFIG} or {MODEL_CONFIG}): {hint}")


def model_config(source: RunSource):
    """The config of the model that export will write (the base's, for adapter runs)."""
    from transformers import AutoConfig

    from ..hub_access import check_hub_answers
    from ..model import model_path

    if not source.is_adapter:
        return AutoConfig.from_pretrained(source.run_dir)
    margs = source.recipe.model
    kwargs = {"gguf_file": margs.gguf_file} if margs.gguf_file else {}
    check_hub_answers(model_path(margs), "the run's base model")
    try:
        return AutoConfig.from_pretrained(model_path(margs), revision=margs.model_revision, **kwargs)
    except OSError as err:
        raise UserError(f"cannot read the base model's config {margs.model_name_or_path!r}: {err}") from None


def load_tokenizer(source: RunSource):
    """The tokenizer the run saved beside its model (what training used), else the recipe's."""
    from transformers import AutoTokenizer

    from ..model import load_tokenizer as recipe_tokenizer

    if (source.run_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(source.run_dir)
    return recipe_tokenizer(source.recipe.model, source.recipe.training)

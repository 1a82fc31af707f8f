"""Does a recipe still fit the checkpoint it resumes? Compared before anything loads.

A checkpoint holds weights of one shape and an optimizer over one set of trainable parameters:
another model, another LoRA rank or target set cannot load into it (a load_state_dict traceback
deep in the Trainer), and another base model under the same adapter would resume silently wrong.
Those fields are refused by name; any other field that changed (max_length, learning_rate, the
precision on another machine) is said in one line, since the run continues with the new value.
The checkpoint's recipe is the one its run recorded (its run folder's recipe.yaml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .run_folder import RECIPE_FILE

# What decides the shapes a checkpoint holds (the model's and the optimizer's).
MUST_MATCH = ("model_name_or_path", "model_config_overrides", "use_peft", "lora_r", "lora_target_modules",
              "lora_target_parameters", "lora_modules_to_save", "lora_task_type", "use_dora", "load_in_4bit",
              "load_in_8bit", "lora_all_linear")
# Where a run writes, how it was asked to start, and what a resume is expected to change.
NOT_COMPARED = {"output_dir", "resume", "resume_from_checkpoint", "overwrite_output_dir", "run_name",
                "logging_dir", "hub_model_id", "push_to_hub", "max_steps", "num_train_epochs"}


def recorded_recipe(checkpoint: str | Path) -> dict[str, Any] | None:
    """The recipe the checkpoint's run wrote (None when its folder has none, or not readable)."""
    path = Path(checkpoint).parent / RECIPE_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _same_model(old: Any, new: Any) -> bool:
    """Two names of one model: equal, or two local folders with the same config.json (moved)."""
    if old == new:
        return True
    configs = [Path(str(p)).expanduser() / "config.json" for p in (old, new)]
    try:
        return all(c.is_file() for c in configs) and json.loads(configs[0].read_text()) == json.loads(configs[1].read_text())
    except (OSError, ValueError):
        return False


def compare(recorded: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]):
    """([(field, checkpoint's value, this recipe's)] that cannot load, [...] that changed)."""
    refused, changed = [], []
    for field in sorted((set(recorded) | set(current)) - NOT_COMPARED):
        if field not in defaults and (field not in recorded or field not in current):
            continue  # a field one of the two releases does not have
        old, new = recorded.get(field, defaults.get(field)), current.get(field, defaults.get(field))
        if old == new or (field == "model_name_or_path" and _same_model(old, new)):
            continue
        (refused if field in MUST_MATCH else changed).append((field, old, new))
    return refused, changed


def check_recipe_fits(checkpoint: str | Path, current: dict[str, Any], defaults: dict[str, Any], log) -> None:
    """Refuse a recipe that the checkpoint cannot load into (naming the fields); log what changed."""
    recorded = recorded_recipe(checkpoint)
    if recorded is None:
        return
    refused, changed = compare(recorded, current, defaults)
    source = Path(checkpoint).parent / RECIPE_FILE
    if refused:
        shown = "; ".join(f"{f}: {old!r} there, {new!r} now" for f, old, new in refused)
        raise UserError(f"{checkpoint} cannot be resumed with this recipe: {shown}. The checkpoint holds the "
                        f"weights and optimizer of {source}'s model; resume with that recipe "
                        f"(--config {source}), or start anew in a new --output_dir")
    if changed:
        shown = ", ".join(f"{f} {old!r} -> {new!r}" for f, old, new in changed)
        log(f"resuming {checkpoint} with settings changed from its run's recipe: {shown}")


# What torch and the Trainer say when a checkpoint's weights or optimizer do not fit the model.
_MISMATCH_WORDS = ("size mismatch for", "Error(s) in loading state_dict", "doesn't match the size of optimizer's group")


def checkpoint_mismatch(err: BaseException) -> str | None:
    """The line of a load error that says what did not fit, or None when `err` is another error."""
    text = str(err)
    if not any(words in text for words in _MISMATCH_WORDS):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("size mismatch")), lines[0])[:400]

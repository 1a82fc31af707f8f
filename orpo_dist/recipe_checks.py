"""Recipe values that cannot train, refused when the recipe is read: before any data or model loads.

Without these checks the values fail deep inside torch or the Trainer with a traceback (a negative
learning rate in AdamW, a batch size of 2.5 in the DataLoader), or worse, train something wrong
without a word (a negative beta rewards the rejected answers). Each message names the field, the
value and the fix. Pure Python: checked on a login node too (recipe.check_without_hardware).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

# ORPO's beta (the paper's lambda) weighs the odds-ratio term against the NLL: the paper and the
# published recipes use 0.05-0.5; beyond 10 the NLL term no longer matters.
BETA_RANGE = (0.0, 10.0)

# field -> (smallest allowed, whether the smallest is allowed, what the value means)
POSITIVE_INTS = {
    "per_device_train_batch_size": "preference pairs per device per step",
    "per_device_eval_batch_size": "preference pairs per device per eval step",
    "gradient_accumulation_steps": "micro-batches per optimizer step",
    "max_length": "tokens per sequence (prompt + answer)",
    "orpo_chunk_size": "positions per chunk of the fast step's vocabulary projection",
}
OPTIONAL_POSITIVE_INTS = {
    "max_prompt_length": "prompt tokens kept when a row does not fit",
    "max_completion_length": "answer tokens kept",
}
NON_NEGATIVE = ("warmup_steps", "weight_decay", "max_grad_norm", "orpo_logits_budget_mb")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_training_values(get: Callable[[str], Any]) -> None:
    """`get(field)` -> the value training would use (an args object's getattr, or a dict's get)."""
    if get("hub_token"):
        # The Trainer pickles its arguments into every checkpoint (training_args.bin) and the
        # resolved recipe is saved beside the model: a token there would travel with the model.
        raise UserError("hub_token is set in the recipe or on the command line: tokens must not be in a recipe "
                        "(it is saved with the run and its checkpoints). Remove it and set HF_TOKEN in the "
                        "environment, or run `hf auth login`")
    for name, meaning in POSITIVE_INTS.items():
        value = get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise UserError(f"{name} is {value!r}: it must be a whole number of at least 1 ({meaning})")
    for name, meaning in OPTIONAL_POSITIVE_INTS.items():
        value = get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise UserError(f"{name} is {value!r}: it must be a whole number of at least 1 ({meaning}), "
                            "or left out")
    lr = get("learning_rate")
    if lr is not None and (not _is_number(lr) or lr <= 0):
        raise UserError(f"learning_rate is {lr!r}: it must be a positive number (ORPO recipes use 5e-6 to 5e-4)")
    beta = get("beta")
    low, high = BETA_RANGE
    if beta is not None and (not _is_number(beta) or not low < beta <= high):
        raise UserError(f"beta is {beta!r}: it must be in ({low:g}, {high:g}] (the paper uses 0.1; 0.05-0.5 is "
                        "usual). A negative beta would train the model to prefer the rejected answers")
    for name in NON_NEGATIVE:
        value = get(name)
        if value is not None and (not _is_number(value) or value < 0):
            raise UserError(f"{name} is {value!r}: it must be a number of at least 0")
    deepspeed = get("deepspeed")
    if isinstance(deepspeed, str) and not deepspeed.lstrip().startswith("{") and deepspeed.endswith(".json") \
            and not Path(deepspeed).expanduser().is_file():
        raise UserError(f"deepspeed config {deepspeed} does not exist (relative paths start at {Path.cwd()}); "
                        "the bundled ones are used by `orpo-dist launch --strategy zero2|zero3|...`")
    epochs, steps = get("num_train_epochs"), get("max_steps")
    if _is_number(epochs) and epochs <= 0 and not (_is_int(steps) and steps > 0):
        raise UserError(f"num_train_epochs is {epochs!r} and max_steps is unset: nothing would train; "
                        "set num_train_epochs > 0 or max_steps > 0")


def check_lora_values(get: Callable[[str], Any]) -> None:
    """LoRA's numbers, refused before the model loads (PEFT would raise after it did, or, for the
    dropout, train with every adapter input zeroed)."""
    if not get("use_peft"):
        return
    r, alpha, dropout = get("lora_r"), get("lora_alpha"), get("lora_dropout")
    if r is not None and (not _is_int(r) or r < 1):
        raise UserError(f"lora_r is {r!r}: the LoRA rank must be a whole number of at least 1 (8-64 is usual)")
    if alpha is not None and (not _is_number(alpha) or alpha <= 0):
        raise UserError(f"lora_alpha is {alpha!r}: it must be a positive number (the adapter's scale is "
                        "lora_alpha / lora_r; 2 x lora_r is usual)")
    if dropout is not None and (not _is_number(dropout) or not 0 <= dropout < 1):
        raise UserError(f"lora_dropout is {dropout!r}: it must be in [0, 1) (0.05 is usual; 1 would drop every input)")
    targets = get("lora_target_modules")
    if isinstance(targets, (list, tuple)) and not [t for t in targets if str(t).strip()]:
        raise UserError("lora_target_modules is an empty list: name the layers to adapt (e.g. [q_proj, v_proj]), "
                        "use all-linear, or leave it out for the attention projections")


def check_data_values(get: Callable[[str], Any]) -> None:
    columns = get("dataset_columns")
    if columns is not None and not isinstance(columns, (dict, str)):
        raise UserError(f"dataset_columns is a {type(columns).__name__} ({columns!r}): it must map our names to "
                        "yours, e.g. dataset_columns: {prompt: question, chosen: good, rejected: bad}")
    for name in ("max_train_samples", "max_eval_samples"):
        value = get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise UserError(f"{name} is {value!r}: it must be a whole number of at least 1, or left out")
    split = get("eval_split_size")
    if split is not None and not (isinstance(split, (int, float)) and not isinstance(split, bool) and 0 <= split < 1):
        raise UserError(f"eval_split_size must be in [0, 1) (the share of rows held out; 0 = none), got {split!r}")


JINJA_MARKERS = ("{{", "{%")
TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2", ".tmpl", ".txt")


def config_overrides_value(value: Any, name: str = "model_config_overrides") -> dict[str, Any] | None:
    """model_config_overrides as a mapping (JSON text accepted, as the CLI gives it), or a UserError."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise UserError(f"{name} is not valid JSON: {err}") from None
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{name} must map config fields to values, e.g. '{{\"num_hidden_layers\": 2}}'; "
                        f"got {type(value).__name__}")
    return value


def lora_targets_value(targets: Any, all_linear: Any) -> Any:
    """lora_target_modules as the run uses it: lora_all_linear means every linear layer."""
    return "all-linear" if all_linear else targets


def read_chat_template(value: Any) -> Any:
    """A recipe's chat_template is Jinja text (alignment-handbook's field), or a file holding it
    (`chat_template: templates/chatml.jinja`), read here: a path must never be rendered as if it
    were the template (every prompt would become that path)."""
    if not isinstance(value, str) or any(marker in value for marker in JINJA_MARKERS):
        return value
    path = Path(value).expanduser()
    looks_like_a_path = "\n" not in value and ("/" in value or value.endswith(TEMPLATE_SUFFIXES))
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"chat_template: cannot read {path}: {err}") from None
        if not any(marker in text for marker in JINJA_MARKERS):
            raise UserError(f"chat_template: {path} holds no Jinja template (no {{{{ ... }}}} or {{% ... %}}): "
                            "point chat_template at a template file, or write the template itself")
        return text
    if looks_like_a_path:
        raise UserError(f"chat_template is {value!r}: no such file (relative paths are read from {Path.cwd()}), "
                        "and it is not a Jinja template either (no {{ ... }} or {% ... %}). Give the template "
                        "file's path, or the template text itself")
    raise UserError(f"chat_template is {value!r}: that is not a Jinja template (no {{{{ ... }}}} or {{% ... %}}), "
                    "so every prompt would be rendered as that text. Give the template text or a template file")


def check_output_dir(output_dir: Any) -> None:
    """A folder we can create: no part of its path may be an existing file."""
    if not output_dir:
        return
    for folder in (Path(output_dir), *Path(output_dir).parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is" if folder == Path(output_dir) else f"lies under {folder}, which is"
                raise UserError(f"output_dir {output_dir} {what} a file, not a folder: choose another --output_dir")
            return


REPORT_TO_AUTO = "auto"


def resolve_report_to(report_to):
    """The Trainer's report_to with `auto` resolved, refusing loggers that are not installed here
    (the Trainer would raise deep inside its callbacks, after the model has loaded)."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    available = get_available_reporting_integrations()
    if report_to in (None, REPORT_TO_AUTO, [REPORT_TO_AUTO]):
        return ["tensorboard"] if "tensorboard" in available else "none"
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in (["none"], ["all"]):
        return report_to
    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise UserError(f"report_to: {', '.join(map(repr, unknown))} is not a logger the Trainer knows; "
                        f"choose from {', '.join(INTEGRATION_TO_CALLBACK)}, or none")
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(f"report_to: {', '.join(missing)} requested but not installed here; "
                        f"`pip install {' '.join(PIP_NAMES.get(n, n) for n in missing)}`, or drop it from report_to")
    return names


PIP_NAMES = {"comet_ml": "comet-ml", "azure_ml": "azureml-core"}

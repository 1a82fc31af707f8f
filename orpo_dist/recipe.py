"""A recipe = the three argument groups of TRL's ORPO example script, parsed by TRL's own parser.

`DataArguments`, `OrpoDistConfig` and `ModelArguments` extend TRL's `ScriptArguments`, orpo-dist's
`OrpoConfig` (TRL's ORPOConfig fields and defaults, orpo/config.py) and TRL's `ModelConfig` with a
few fields, so a YAML recipe written for TRL's ORPO example runs unchanged, every ORPO /
TrainingArguments field works from YAML, and CLI flags override the YAML.
Recipes written for older TRL or for alignment-handbook are read too: renamed fields under their
new names (recipe_compat.py), `max_prompt_length` and `chat_template` as real fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .data.formats import AUTO, FORMAT_CHOICES, FORMATS
from .errors import UserError
from .hardware import apply_training_policy
from .orpo.config import OrpoConfig
from .recipe_checks import (
    REPORT_TO_AUTO, check_data_values, check_lora_values, check_output_dir, check_training_values,
    config_overrides_value, lora_targets_value, read_chat_template, resolve_report_to,
)
from .recipe_compat import HINTS, upgrade, upgrade_argv
from .recipe_files import load_yaml, resolve

from trl import ModelConfig, ScriptArguments, TrlParser  # noqa: E402 - TRL's stable parts: the parser, two argument groups


@dataclass
class DataArguments(ScriptArguments):
    """TRL's ScriptArguments plus what orpo-dist needs to read any preference dataset."""

    dataset_columns: dict[str, str] | str | None = field(
        default=None,
        metadata={
            "help": "Map other column names onto prompt/chosen/rejected, e.g. "
            "'prompt=question,chosen=response_j,rejected=response_k' (or a YAML mapping)."
        },
    )
    dataset_format: str = field(
        default=AUTO,
        metadata={
            "help": f"Row format: {AUTO} (detect) or one of: " + "; ".join(f.label for f in FORMATS.values()) + ".",
            "choices": list(FORMAT_CHOICES),
        },
    )
    dataset_strict: bool = field(
        default=False,
        metadata={"help": "Refuse a dataset with bad rows instead of dropping them with a printed count."},
    )
    eval_split_size: float = field(
        default=0.05,
        metadata={"help": "Share of rows held out (seeded) for evaluation when the data has no test split; 0 = none."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many held-out pairs."})
    apply_chat_template: bool = field(
        default=True,
        metadata={"help": "Render prompts with the tokenizer's chat template when it has one."},
    )

    def __post_init__(self):
        check_data_values(lambda name: getattr(self, name, None))
        if isinstance(self.dataset_columns, str):
            self.dataset_columns = parse_mapping(self.dataset_columns, "dataset_columns")


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ModelConfig plus offline/test conveniences."""

    dtype: str | None = field(
        default=None,
        metadata={
            "help": "Weights dtype. Unset: bfloat16 when training in bf16 (GPUs), float32 otherwise (CPU).",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to use when it differs from the model's."}
    )
    chat_template: str | None = field(
        default=None,
        metadata={
            "help": "A Jinja chat template that replaces the tokenizer's for this run (alignment-handbook's "
            "field); it renders the data and is saved with the trained model's tokenizer."
        },
    )
    gguf_file: str | None = field(default=None, metadata={"help": "Load this GGUF file from model_name_or_path."})
    random_init: bool = field(
        default=False,
        metadata={"help": "Build the model from its config with random weights (tests, smoke runs)."},
    )
    model_config_overrides: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Override config fields before building, e.g. '{\"num_hidden_layers\": 2}'."},
    )
    lora_all_linear: bool = field(
        default=False, metadata={"help": "Put LoRA on every linear layer (lora_target_modules=all-linear)."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.model_config_overrides = config_overrides_value(self.model_config_overrides)
        self.lora_target_modules = lora_targets_value(self.lora_target_modules, self.lora_all_linear)
        self.chat_template = read_chat_template(self.chat_template)
        check_lora_values(lambda name: getattr(self, name, None))


@dataclass
class OrpoDistConfig(OrpoConfig):
    """OrpoConfig whose precision and device follow the hardware unless the recipe says otherwise."""

    resume: bool = field(
        default=False,
        metadata={"help": "Continue from the last checkpoint in output_dir (start fresh if there is none)."},
    )
    report_to: None | str | list[str] = field(
        default=REPORT_TO_AUTO,
        metadata={"help": "Loggers, as the Trainer's report_to (tensorboard, wandb, mlflow, ... or none). "
                  f"{REPORT_TO_AUTO}: tensorboard when it is installed, else none."},
    )

    def __post_init__(self):
        check_training_values(lambda name: getattr(self, name, None))
        check_output_dir(self.output_dir)
        check_prompt_length(self.max_prompt_length, self.max_length)
        self.report_to = resolve_report_to(self.report_to)
        apply_training_policy(self)  # before TrainingArguments sets up the device from these fields
        super().__post_init__()


class Recipe(NamedTuple):
    data: DataArguments
    training: OrpoDistConfig
    model: ModelArguments


ARG_CLASSES = (DataArguments, OrpoDistConfig, ModelArguments)


def make_parser(prog: str = "orpo-dist train") -> TrlParser:
    return TrlParser(ARG_CLASSES, prog=prog)


def parse_mapping(text: str, name: str) -> dict[str, str]:
    """'a=b,c=d' -> {'a': 'b', 'c': 'd'}; JSON objects are accepted too."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise UserError(f"{name} is not valid JSON: {err}") from None
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{name}: expected KEY=VALUE pairs separated by commas, got {part!r}")
        mapping[key.strip()] = value.strip()
    return mapping


def check_prompt_length(max_prompt_length, max_length) -> None:
    if max_prompt_length is None:
        return
    if not isinstance(max_prompt_length, int) or isinstance(max_prompt_length, bool) or max_prompt_length < 1:
        raise UserError(f"max_prompt_length must be a whole number of at least 1, got {max_prompt_length!r}")
    if max_length is not None and max_prompt_length >= max_length:
        raise UserError(f"max_prompt_length {max_prompt_length} leaves no room for the answer within max_length "
                        f"{max_length}: make it smaller than max_length")


def known_fields() -> set[str]:
    return {f.name for cls in ARG_CLASSES for f in dataclasses.fields(cls) if f.init}


def check_keys(config: dict[str, Any], source: str) -> None:
    known = known_fields() | {"env"}
    unknown = [k for k in config if k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hint = HINTS.get(key) or (f"did you mean {close[0]!r}?" if close else "")
            hints.append(f"{key!r}" + (f" ({hint})" if hint else ""))
        raise UserError(
            f"{source}: unknown recipe field(s) {', '.join(hints)}.\n"
            "  Fields are those of TRL's ORPOConfig (orpo-dist's OrpoConfig)/TrainingArguments, ModelConfig and ScriptArguments "
            "(see `orpo-dist train --help`)."
        )


def read_recipe(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(its file, its fields under today's names, checked): a recipe file or a bundled recipe's name."""
    path = str(resolve(name_or_path))
    config = upgrade(load_yaml(path), path)
    check_keys(config, path)
    return path, config


def _set_env(env: Any, source: str) -> None:
    """A recipe's `env:` mapping goes into os.environ, as TRL's parser does with --config."""
    if env is None:
        return
    if not isinstance(env, dict):
        raise UserError(f"{source}: `env` must be a mapping of variable names to values")
    for key, value in env.items():
        os.environ[str(key)] = str(value)


def _bundled(name: str) -> bool:
    from .recipe_files import bundled_path

    return bundled_path(name) is not None


def _pop_config(argv: list[str]) -> str | None:
    if "--config" not in argv:
        return None
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise UserError("--config needs a recipe: a YAML file or a bundled recipe's name, e.g. --config tiny")
    del argv[index]
    return argv.pop(index)


def parse(argv: list[str] | None = None, prog: str = "orpo-dist train", defaults: dict | None = None) -> Recipe:
    """Parse `[--config RECIPE] [--field value ...]` into a Recipe, with clear errors. RECIPE is a
    YAML file or a bundled recipe's name.

    `defaults` (an embedded recipe, e.g. the demo's) sits under the YAML and the CLI flags."""
    argv = upgrade_argv(list(sys.argv[1:] if argv is None else argv))
    recipe = _pop_config(argv)
    if argv and not argv[0].startswith("-"):
        # HfArgumentParser would call it an argument "not used": say where a recipe goes.
        given = argv[0]
        if recipe is None and (given.endswith((".yaml", ".yml")) or Path(given).is_file() or _bundled(given)):
            raise UserError(f"{prog} takes its recipe after --config: `{prog} --config {given}`")
        raise UserError(f"unexpected argument {given!r}: every option is --name value "
                        f"(`{prog} --help` lists them; the recipe goes after --config)")
    parser = make_parser(prog)
    if defaults:
        check_keys(defaults, "embedded recipe")
        parser.set_defaults_with_config(**defaults)
    if recipe is not None:
        path, config = read_recipe(recipe)
        _set_env(config.pop("env", None), path)
        parser.set_defaults_with_config(**config)
    try:
        data, training, model = parser.parse_args_and_config(argv)
    except UserError:
        raise
    except (ValueError, TypeError) as err:
        flags = [a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")]
        unknown = {f: None for f in flags if f not in known_fields() and f != "config"}
        if "not used by the HfArgumentParser" in str(err) and unknown:
            check_keys(unknown, "command line")  # names the closest real field
        raise UserError(f"the recipe does not parse: {err}") from None
    return Recipe(data, training, model)


_PLAIN = (str, int, float, bool, type(None))


def to_plain(value: Any) -> Any:
    """YAML-safe form of a field value; None for objects that __post_init__ derived (skipped)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(type(value).__name__)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def field_defaults() -> dict[str, Any]:
    """Every recipe field's default (YAML-plain): what a run uses for a field its recipe leaves out."""
    out: dict[str, Any] = {}
    for cls in ARG_CLASSES:
        for f in dataclasses.fields(cls):
            if not f.init or f.name.startswith("_") or f.name in out or _default(f) is dataclasses.MISSING:
                continue
            try:
                out[f.name] = to_plain(_default(f))
            except TypeError:
                continue
    return out


def resolved_dict(recipe: Recipe) -> dict[str, Any]:
    """The fields that differ from TRL's defaults after the YAML, the CLI and the hardware had
    their say: loadable again with --config to repeat the run."""
    out: dict[str, Any] = {}
    for args in recipe:
        for f in dataclasses.fields(args):
            if not f.init or f.name.startswith("_") or f.name in out:
                continue
            try:
                value, default = to_plain(getattr(args, f.name)), to_plain(_default(f))
            except TypeError:
                continue
            if value != default:
                out[f.name] = value
    out.pop("logging_dir", None)  # derived from output_dir by TrainingArguments
    return out


def write_resolved(recipe: Recipe, path: str | os.PathLike) -> None:
    from .atomic import write_text

    write_text(Path(path), yaml.safe_dump(resolved_dict(recipe), sort_keys=True))


def check_without_hardware(recipe: str, overrides: list[str]) -> dict[str, Any]:
    """Check a recipe (a file or a bundled name) and its overrides on a machine that will not run
    it (a login node, a laptop building a launch command): field names and CLI value types,
    without building the training arguments (which would check for the job's GPUs here).
    Returns the merged values."""
    path, config = read_recipe(recipe)
    config.pop("env", None)
    parser = make_parser("orpo-dist")
    parser.set_defaults_with_config(**config)
    overrides = upgrade_argv(list(overrides))
    try:
        namespace, unknown = parser.parse_known_args(overrides)
    except SystemExit:
        raise UserError(f"bad override in {' '.join(overrides)} (see `orpo-dist train --help`)") from None
    if unknown:
        raise UserError(f"unknown override(s) {' '.join(unknown)} (see `orpo-dist train --help`)")
    values = vars(namespace)
    check_training_values(values.get)
    check_data_values(values.get)
    check_lora_values(values.get)
    values["chat_template"] = read_chat_template(values.get("chat_template"))
    values["model_config_overrides"] = config_overrides_value(values.get("model_config_overrides"))
    values["lora_target_modules"] = lora_targets_value(values.get("lora_target_modules"), values.get("lora_all_linear"))
    check_prompt_length(values.get("max_prompt_length"), values.get("max_length"))
    resolve_report_to(values.get("report_to"))  # a logger the job's venv lacks fails here, not on the nodes
    return values

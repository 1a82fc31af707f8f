"""Planner inputs from a recipe: the fields of a parsed YAML recipe (or the parser's merged values).

A field the recipe leaves out is planned at the value training would use: the default of the
recipe's own argument classes (TRL's ORPOConfig / ModelConfig, as orpo_dist.recipe extends them).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from ..builtin_models import NO_MODEL
from ..errors import UserError
from ..recipe_checks import config_overrides_value, lora_targets_value
from ..model_rules import plans_fast_step, training_method
from .memory import Plan, estimate
from .spec import Assumptions, Hardware, Workload
from .recommend import Recommendation, recommend
from ..model_shape import ModelShape
from .shapes import resolve_shape


class PlanInputs(NamedTuple):
    shape: ModelShape
    method: str
    workload: Workload


def method_of(values: dict[str, Any]) -> str:
    """full, lora or qlora, by the rule orpo_dist.model applies."""
    return training_method(values.get("use_peft"), values.get("load_in_4bit"), values.get("load_in_8bit"))


@functools.cache
def _recipe_defaults() -> dict[str, Any]:
    from ..recipe import field_defaults  # TRL's argument classes: imported only when a field is missing

    return field_defaults()


def _get(values: dict[str, Any], key: str):
    value = values.get(key)
    return _recipe_defaults().get(key) if value is None else value


def _int(values, key) -> int:
    value = _get(values, key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"recipe field {key} must be a whole number, got {value!r}") from None


def _bool(values, key) -> bool:
    value = _get(values, key)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def workload_from_recipe(values: dict[str, Any]) -> Workload:
    targets = lora_targets_value(values.get("lora_target_modules"), values.get("lora_all_linear"))
    if isinstance(targets, (list, tuple)):
        targets = "all-linear" if list(targets) == ["all-linear"] else tuple(str(t) for t in targets)
    dtype = values.get("dtype")
    if dtype == "auto":
        dtype = None
    return Workload(
        max_length=_int(values, "max_length"),
        micro_batch=_int(values, "per_device_train_batch_size"),
        grad_accum=_int(values, "gradient_accumulation_steps"),
        gradient_checkpointing=_bool(values, "gradient_checkpointing"),
        lora_r=_int(values, "lora_r"),
        lora_targets=targets,
        lora_dropout=float(_get(values, "lora_dropout")),
        optim=str(_get(values, "optim")),
        double_quant=_bool(values, "use_bnb_nested_quant"),
        quant_bits=8 if values.get("load_in_8bit") else 4,
        dtype=dtype,
        orpo_chunk_size=_int(values, "orpo_chunk_size"),
        orpo_logits_budget_mb=_int(values, "orpo_logits_budget_mb"),
        checkpoint_policy=str(_get(values, "orpo_activation_checkpointing")),
    ).validate()


def config_overrides(values: dict[str, Any]) -> dict[str, Any] | None:
    return config_overrides_value(values.get("model_config_overrides")) or None


def inputs_from_recipe(values: dict[str, Any]) -> PlanInputs:
    """(shape, method, workload) from recipe fields: model_name_or_path, use_peft, load_in_4bit,
    lora_r, lora_target_modules, max_length, per_device_train_batch_size,
    gradient_accumulation_steps, gradient_checkpointing, optim (and model_config_overrides)."""
    if not isinstance(values, dict):
        raise UserError(f"a recipe must be a mapping of field names to values, got {type(values).__name__}")
    name = values.get("model_name_or_path")
    if not name:
        raise UserError(NO_MODEL)
    shape = resolve_shape(str(name), config_overrides(values))
    workload = workload_from_recipe(values).replace(
        fast_step=plans_fast_step(_get(values, "orpo_step"), shape.model_type))
    return PlanInputs(shape, method_of(values), workload)


def plan_recipe(values: dict[str, Any], hardware: Hardware,
                assumptions: Assumptions | None = None) -> tuple[Plan, Recommendation]:
    """Estimate and recommend for a recipe on this hardware."""
    shape, method, workload = inputs_from_recipe(values)
    plan = estimate(shape, method, hardware, workload, assumptions)
    return plan, recommend(plan)

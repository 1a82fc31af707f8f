"""Memory planner: per-device memory of an ORPO run under each strategy, and the one to use.

    from orpo_dist.planner import resolve_shape, Hardware, Workload, estimate, recommend, format_plan
    shape = resolve_shape("meta-llama/Meta-Llama-3-70B")            # built-in, local folder or hub
    plan = estimate(shape, "lora", Hardware(gpus_per_node=8, gpu_mem_gib=80), Workload(max_length=1024))
    rec = recommend(plan)                    # rec.strategy, rec.micro_batch, rec.grad_accum, ...
    print(format_plan(plan, rec))            # or plan.to_dict() | {"recommendation": rec.to_dict()}

From a recipe (the launcher's way):

    hardware = detect_hardware(num_processes=16, num_machines=2, gpu_mem_gib=None)  # GPUs here, or CPU
    shape, method, workload = inputs_from_recipe(recipe_values)
    plan, rec = plan_recipe(recipe_values, hardware)        # both steps at once
    require_fit(plan, "zero2", force=False)                 # UserError if it cannot fit

Method and assumptions: docs/planner.md. Nothing here imports torch until a shape is resolved.
"""

from .memory import (
    COMPONENTS,
    DEEPSPEED,
    GiB,
    METHODS,
    STRATEGIES,
    Assumptions,
    Hardware,
    Plan,
    StrategyEstimate,
    Workload,
    estimate,
)
from .detect import detect_hardware, host_memory_gib
from .recipe import PlanInputs, inputs_from_recipe, plan_recipe
from .recommend import Recommendation, max_micro_batch, recommend, require_fit, what_would_fit
from .report import format_plan, plan_json
from .shapes import BUILTIN, ModelShape, builtin_names, lora_params, resolve_shape, shape_from_config

load_shape = resolve_shape  # the name the first draft used

__all__ = [
    "BUILTIN", "COMPONENTS", "DEEPSPEED", "GiB", "METHODS", "STRATEGIES", "Assumptions", "Hardware", "ModelShape",
    "Plan", "PlanInputs", "Recommendation", "StrategyEstimate", "Workload", "builtin_names", "detect_hardware",
    "estimate", "host_memory_gib",
    "format_plan", "inputs_from_recipe", "load_shape", "lora_params", "max_micro_batch", "plan_json",
    "plan_recipe", "recommend", "require_fit", "resolve_shape", "shape_from_config", "what_would_fit",
]

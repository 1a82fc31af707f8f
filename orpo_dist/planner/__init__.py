"""Memory planner: per-device memory of an ORPO run under each strategy, and the one to use.

The launchers' front door (what `orpo-dist launch/submit --strategy auto` call):

    hardware = detect_hardware(num_processes=16, num_machines=2, gpu_mem_gib=None)  # GPUs here, or CPU
    plan, rec = plan_recipe(recipe_values, hardware)        # estimate + recommend for a recipe
    print(format_plan(plan, rec))
    require_fit(plan, "zero2", force=False)                 # UserError if it cannot fit

The parts: shapes (where a model's config comes from; its exact parameter counts, built on the meta
device, are orpo_dist/model_shape.py's, which training reads too), memory (the
per-strategy estimate), recommend, inputs (a recipe's fields -> shape, method, workload), detect,
printout, table, cli. Method and assumptions: docs/planner.md. Nothing here imports torch until a
shape is resolved.
"""

from .detect import detect_hardware
from .inputs import plan_recipe
from .spec import Hardware
from .recommend import require_fit
from .printout import format_plan

__all__ = ["Hardware", "detect_hardware", "format_plan", "plan_recipe", "require_fit"]

"""`--strategy auto` and the fit check before a launch, through the memory planner.

`auto` picks the planner's recommendation; an explicit strategy that the planner says cannot fit
is refused (unless --force) before any process or job starts. When the planner cannot size the
model (an unknown hub name offline), an explicit strategy goes ahead with a note.
"""

from __future__ import annotations

from ..errors import UserError
from ..strategies import AUTO


def choose_strategy(strategy: str, values: dict, hardware, force: bool = False) -> str:
    """`hardware`: a planner Hardware, or None when the job's devices can't be known from here."""
    from ..planner import format_plan, plan_recipe, require_fit

    if hardware is None:
        if strategy == AUTO:
            raise UserError("--strategy auto needs the GPUs' memory: pass --gpu-mem GiB")
        print(f"orpo-dist: no fit check for {strategy} (pass --gpu-mem to have the planner check it)")
        return strategy
    try:
        plan, rec = plan_recipe(values, hardware)
    except UserError as err:
        if strategy == AUTO:
            raise UserError(f"--strategy auto cannot plan this recipe: {err}") from None
        print(f"orpo-dist: the planner cannot size this model ({str(err).splitlines()[0]}); launching {strategy} as asked")
        return strategy
    print(format_plan(plan, rec), flush=True)
    if strategy == AUTO:
        if rec.strategy is None:
            raise UserError("no strategy fits this recipe on this hardware. What would: " + "; ".join(rec.suggestions))
        if rec.micro_batch != plan.workload.micro_batch:
            print(f"orpo-dist: note: the planner suggests --per_device_train_batch_size {rec.micro_batch} "
                  f"--gradient_accumulation_steps {rec.grad_accum} to keep the global batch")
        return rec.strategy
    require_fit(plan, strategy, force)
    return strategy

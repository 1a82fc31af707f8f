"""The recommendation: the fastest strategy that fits, its largest micro-batch, the gradient
accumulation that keeps the global batch, and, when nothing fits, what would."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..strategies import STRATEGIES
from ..model_rules import METHODS
from .memory import Plan, StrategyEstimate, estimate
from .spec import GiB, Hardware

MAX_MICRO_BATCH = 4096


@dataclass
class Recommendation:
    strategy: str | None  # None: nothing fits
    micro_batch: int = 0  # per device, suggested (divides the per-device share of the global batch)
    grad_accum: int = 0
    global_batch: int = 0  # what micro_batch x grad_accum x world gives
    max_micro_batch: int = 0  # the largest micro-batch that fits under the recommended strategy
    peak_bytes: int = 0  # at the suggested micro-batch
    usable_bytes: int = 0
    reason: str = ""
    suggestions: list[str] = field(default_factory=list)  # when nothing fits: what would
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.strategy is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fits"] = self.fits
        d["peak_gib"] = round(self.peak_bytes / GiB, 3)
        d["usable_gib"] = round(self.usable_bytes / GiB, 3)
        return d


def _replan(plan: Plan, *, method: str | None = None, hardware: Hardware | None = None, **workload) -> Plan:
    return estimate(plan.shape, method or plan.method, hardware or plan.hardware,
                    plan.workload.replace(**workload), plan.assumptions)


def fits_at(plan: Plan, strategy: str, micro_batch: int) -> StrategyEstimate:
    if micro_batch == plan.workload.micro_batch:
        return plan.strategy(strategy)
    return _replan(plan, micro_batch=micro_batch, global_batch=plan.global_batch).strategy(strategy)


def max_micro_batch(plan: Plan, strategy: str, limit: int = MAX_MICRO_BATCH) -> int:
    """The largest micro-batch (pairs per device) that fits under `strategy` (0: not even one)."""
    if not fits_at(plan, strategy, 1).fits:
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits_at(plan, strategy, hi).fits:  # memory grows linearly with the batch
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_at(plan, strategy, mid).fits else (lo, mid)
    return lo


def split_global_batch(global_batch: int, world: int, max_micro: int) -> tuple[int, int, int, list[str]]:
    """(micro_batch, grad_accum, resulting global batch, notes): the largest micro-batch that fits and
    divides each device's share of the global batch, and the accumulation that makes up the rest."""
    notes = []
    share, rest = divmod(global_batch, world)
    if share == 0:
        notes.append(f"{world} devices are more than the global batch of {global_batch} pairs: "
                     f"it grows to {world} (one pair per device)")
        return 1, 1, world, notes
    if rest:
        notes.append(f"the global batch of {global_batch} pairs does not divide over {world} devices: "
                     f"using {share * world}")
    micro = max(d for d in range(1, min(share, max_micro) + 1) if share % d == 0)
    return micro, share // micro, micro * (share // micro) * world, notes


def recommend(plan: Plan) -> Recommendation:
    """The fastest strategy that fits with the safety margin (order: single, DDP, ZeRO-2, ZeRO-3,
    ZeRO-3 + optimizer offload, ZeRO-3 + full offload), at the largest micro-batch that fits and keeps
    the global batch; or, when nothing fits even at micro-batch 1, what would."""
    world = plan.hardware.world
    chosen, best = None, 0
    for e in plan.estimates:
        if not e.available:
            continue
        best = max_micro_batch(plan, e.strategy)
        if best:
            chosen = e.strategy
            break
    if chosen is None:
        return Recommendation(None, reason="no strategy fits, even at micro-batch 1",
                              usable_bytes=plan.estimates[0].usable, suggestions=what_would_fit(plan),
                              global_batch=plan.global_batch)
    micro, accum, global_batch, notes = split_global_batch(plan.global_batch, world, best)
    at = fits_at(plan, chosen, micro)
    wl = plan.workload
    if micro < wl.micro_batch:
        notes.insert(0, f"the recipe's micro-batch of {wl.micro_batch} does not fit under {chosen}: "
                        f"{micro} x {accum} accumulation keeps the global batch")
    faster = [e for e in plan.estimates if e.available and STRATEGIES.index(e.strategy) < STRATEGIES.index(chosen)]
    reason = f"fastest that fits with a {plan.assumptions.margin:.0%} margin"
    if faster:
        reason += " (" + "; ".join(f"{e.strategy}: {e.reason or 'does not fit'}" for e in faster) + ")"
    notes += at.notes
    if plan.hardware.device == "cpu":
        notes.append("CPU processes: the figures count tensors; glibc's malloc can keep freed tensors resident "
                     "on top (measured up to 41% more under ZeRO-3; docs/planner.md, \"What RSS shows on CPU\")")
    return Recommendation(chosen, micro, accum, global_batch, best, at.peak, at.usable, reason, [], notes)


def require_fit(plan: Plan, strategy: str, force: bool = False) -> StrategyEstimate:
    """For launchers: the estimate of a requested strategy; a UserError when it cannot fit (unless
    forced), saying what does fit."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)} or auto")
    e = plan.strategy(strategy)
    if e.fits or force:
        return e
    rec = recommend(plan)
    if not e.available:
        why = f"{strategy} {e.reason}"
    else:
        why = f"{strategy} will not fit: {e.reason} (micro-batch {plan.workload.micro_batch})"
    hint = (f"the planner recommends {rec.strategy} (micro-batch {rec.micro_batch}, gradient accumulation "
            f"{rec.grad_accum})" if rec.strategy else "nothing fits: " + "; ".join(rec.suggestions))
    raise UserError(f"{why}.\n  {hint}.\n  Use --strategy auto, or --force to launch anyway.")


def what_would_fit(plan: Plan) -> list[str]:
    """Concrete changes that make some strategy fit at micro-batch 1."""
    out: list[str] = []
    hw, wl = plan.hardware, plan.workload
    one = dict(micro_batch=1, global_batch=plan.global_batch)

    def first_fit(p: Plan) -> StrategyEstimate | None:
        return next((e for e in p.estimates if e.fits), None)

    # CPU memory is the only obstacle for an offload strategy
    for e in plan.estimates:
        if e.cpu_checked and not e.fits:
            at1 = fits_at(plan, e.strategy, 1)
            if at1.peak <= at1.usable:
                need = at1.cpu / (1 - plan.assumptions.margin) / GiB
                out.append(f"more host memory: {e.strategy} fits the GPUs but needs about {need:.0f} GiB "
                           f"per node ({hw.cpu_mem_gib:g} GiB given)")
                break
    # more GPUs of the same kind
    per_node = max(hw.gpus_per_node, 1)
    for total in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if total <= hw.world:
            continue
        gpn = min(total, max(per_node, 8)) if total > per_node else total
        more = dataclasses.replace(hw, gpus_per_node=gpn, nodes=-(-total // gpn))
        e = first_fit(_replan(plan, hardware=more, **one))
        if e:
            out.append(f"more GPUs: {more.world} ({more.nodes} node{'s' if more.nodes > 1 else ''} x "
                       f"{more.gpus_per_node}) of {hw.gpu_mem_gib:g} GiB fit with {e.strategy}")
            break
    # a lighter method
    for method in METHODS[METHODS.index(plan.method) + 1:]:
        e = first_fit(_replan(plan, method=method, **one))
        if e:
            out.append(f"--method {method}: fits with {e.strategy} at micro-batch 1")
            break
    if not wl.gradient_checkpointing:
        e = first_fit(_replan(plan, gradient_checkpointing=True, **one))
        if e:
            out.append(f"gradient checkpointing on: fits with {e.strategy}")
    # shorter sequences
    length, found = wl.max_length, False
    while length > 64 and not found:
        length //= 2
        for checkpointing in dict.fromkeys((wl.gradient_checkpointing, True)):
            e = first_fit(_replan(plan, max_length=length, gradient_checkpointing=checkpointing, **one))
            if e:
                extra = " and gradient checkpointing on" if checkpointing != wl.gradient_checkpointing else ""
                out.append(f"a shorter max_length: {length}{extra} fits with {e.strategy} at micro-batch 1")
                found = True
                break
    if not out:
        out.append("nothing close fits: use GPUs with more memory, a smaller model, or QLoRA with fewer layers")
    return out

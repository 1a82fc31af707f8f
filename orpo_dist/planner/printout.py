"""The plan for a terminal (format_plan) and as JSON (plan_json)."""

from __future__ import annotations

import json

from ..strategies import strategy
from .memory import Plan
from .spec import GiB
from .recommend import Recommendation, recommend


def _g(value: float, width: int = 7) -> str:
    return f"{value / GiB:{width}.1f}"


def _targets(plan: Plan) -> str:
    return ",".join(plan.lora_targets) if plan.lora_targets else "-"


def describe(plan: Plan) -> list[str]:
    s, hw, wl, a = plan.shape, plan.hardware, plan.workload, plan.assumptions
    if plan.method == "full":
        method = f"full fine-tuning: all {plan.trainable_params / 1e9:.2f}B parameters trained"
    else:
        base = "bf16" if plan.weight_bytes == 2 else "fp32"
        if plan.method == "qlora":
            base = f"{wl.quant_bits}-bit{' nf4 + double quant' if wl.quant_bits == 4 and wl.double_quant else ''}"
        method = (f"{plan.method} r={wl.lora_r} on {_targets(plan)}: {plan.trainable_params / 1e6:.1f}M trainable "
                  f"({100 * plan.trainable_params / s.total_params:.2f}%), frozen base {base}")
    device = "GPU" if hw.device == "cuda" else "CPU process"
    cpu = f"{hw.cpu_mem_gib:g} GiB host memory per node" if hw.cpu_mem_gib is not None else "host memory not given"
    return [
        f"model     {s.summary()}",
        f"method    {method}",
        f"hardware  {hw.nodes} node{'s' if hw.nodes > 1 else ''} x {hw.gpus_per_node} {device}"
        f"{'s' if hw.gpus_per_node > 1 else ''} of {hw.gpu_mem_gib:g} GiB "
        f"({hw.gpu_mem_gib * (1 - a.margin):.1f} usable with a {a.margin:.0%} margin); {cpu}",
        f"workload  micro-batch {wl.micro_batch} pair{'s' if wl.micro_batch > 1 else ''} = "
        f"{2 * wl.micro_batch} sequences (chosen + rejected) x {wl.max_length} tokens; gradient accumulation "
        f"{wl.grad_accum}; global batch {plan.global_batch}; gradient checkpointing "
        f"{'on' if wl.gradient_checkpointing else 'off'}; {wl.optim}; "
        + (f"fast ORPO step (head in chunks of {wl.orpo_chunk_size} positions)" if wl.fast_step
           else "stock ORPO step (full logits)"),
    ]


def format_plan(plan: Plan, rec: Recommendation | None = None) -> str:
    """A per-strategy table of GiB per device and the recommendation, for a terminal."""
    rec = rec if rec is not None else recommend(plan)
    unit = "GiB per GPU" if plan.hardware.device == "cuda" else "GiB per process"
    head = (f"{unit:<22}{'frozen':>7}{'train':>7}{'grads':>7}{'optim':>7}{'gather':>7}{'activ':>7}"
            f"{'logits':>7}{'other':>7}{'peak':>8}{'CPU/node':>10}  fits")
    lines = describe(plan) + ["", head]
    for e in plan.estimates:
        g = e.gpu
        cpu = f"{e.cpu / GiB:9.0f}{'*' if e.cpu_checked else ' '}"
        if not e.available:
            verdict = f"n/a: {e.reason}"
        else:
            verdict = "yes" if e.fits else f"no: {e.reason}"
        label = strategy(e.strategy).label
        if plan.hardware.device == "cpu":
            label = label.replace("single GPU", "single process")
        lines.append(
            f"{label:<22}{_g(g['frozen_weights'])}{_g(g['trainable_weights'])}"
            f"{_g(g['gradients'])}{_g(g['optimizer_states'])}{_g(g['gathered_layer'])}{_g(g['activations'])}"
            f"{_g(g['logits'] + g['loss_buffers'])}{_g(g['comm_buffers'] + g['overhead'])}{_g(e.peak, 8)}"
            f"{cpu}  {verdict}"
        )
    lines.append("  (logits = logits + loss buffers; other = comm buffers + CUDA context; peak = other + "
                 "max(forward/backward, optimizer step); CPU/node * = checked against --cpu-mem)")
    lines.append("")
    if rec.strategy:
        lines.append(f"recommended: {rec.strategy} at micro-batch {rec.micro_batch}, gradient accumulation "
                     f"{rec.grad_accum} (global batch {rec.global_batch}); peak {rec.peak_bytes / GiB:.1f} of "
                     f"{rec.usable_bytes / GiB:.1f} GiB usable")
        lines.append(f"  largest micro-batch that fits under {rec.strategy}: {rec.max_micro_batch}")
        lines.append(f"  why: {rec.reason}")
    else:
        lines.append(f"nothing fits: {rec.reason}. What would:")
        lines += [f"  - {s}" for s in rec.suggestions]
    lines += [f"  note: {n}" for n in dict.fromkeys(rec.notes)]
    return "\n".join(lines)


def plan_json(plan: Plan, rec: Recommendation | None = None) -> str:
    rec = rec if rec is not None else recommend(plan)
    return json.dumps(plan.to_dict() | {"recommendation": rec.to_dict()}, indent=2)

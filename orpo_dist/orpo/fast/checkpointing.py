"""Selective activation checkpointing for the fast step: drop what is cheap to recompute.

A decoder layer keeps about 8 tensors of (positions x hidden) and 4 of (positions x
intermediate) for its backward (benchmarks/activation_memory.py measures them). Two kinds are
cheap to recompute, elementwise work only:

- `norms`: an RMSNorm keeps its input and its normalised output; checkpointed it keeps the input
  only and recomputes the rest in the backward.
- `mlp-act`: the MLP's `act_fn(gate) * up` keeps the activation's output besides gate and up;
  checkpointed it keeps gate and up only.

`mlp` checkpoints the whole MLP: it keeps only the MLP's input and recomputes the gate and up
projections in the backward (two matrix products per position more: memory for time).
HF's `gradient_checkpointing` (whole layers) is the coarsest level and is used instead of these
when a recipe sets it.

The MLP forms are those of the architectures the fast step runs (llama, mistral, qwen2, qwen3:
`down_proj(act_fn(gate_proj(x)) * up_proj(x))`).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ...model_rules import CHECKPOINT_POLICIES as POLICIES  # noqa: F401  (one home, shared with the planner)


def _kinds(policy: str) -> set[str]:
    return set() if policy == "none" else set(policy.split("+"))


def _checkpointed(function):
    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(function, *args, use_reentrant=False, **kwargs)
        return function(*args, **kwargs)
    return run


def _is_norm(module) -> bool:
    return type(module).__name__.endswith("RMSNorm")


def _gated_mlp_forward(mlp):
    def act_times_up(gate, up):
        return mlp.act_fn(gate) * up

    recompute = _checkpointed(act_times_up)

    def forward(x):
        return mlp.down_proj(recompute(mlp.gate_proj(x), mlp.up_proj(x)))
    return forward


def apply(decoder: torch.nn.Module, policy: str) -> int:
    """Wrap the decoder's norms and MLPs as `policy` says (POLICIES); returns the modules wrapped.
    Wrapping is per instance (module.forward), so parameters, hooks (DDP, ZeRO-3) and state dicts
    are untouched; applying again replaces the earlier policy (a model reused by several
    trainers is never wrapped twice)."""
    kinds = _kinds(policy)
    wrapped = 0
    for name, module in decoder.named_modules():
        if "_orpo_plain_forward" in module.__dict__:  # undo an earlier policy
            module.forward = module.__dict__.pop("_orpo_plain_forward")
            if module.forward == getattr(type(module), "forward").__get__(module):
                del module.forward
        plain = module.forward
        if "norms" in kinds and _is_norm(module):
            module.forward = _checkpointed(plain)
        elif name.endswith("mlp") and {"mlp", "mlp-act"} & kinds and hasattr(module, "gate_proj"):
            module.forward = _checkpointed(plain) if "mlp" in kinds else _gated_mlp_forward(module)
        else:
            continue
        module._orpo_plain_forward = plain
        wrapped += 1
    return wrapped

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

The MLP forms are architectures.py's: "gated" `down_proj(act_fn(gate_proj(x)) * up_proj(x))`,
"fused" (phi3) the same with `gate_up_proj`, and "moe", whose experts compute their activations
inside one module: `mlp` recomputes the whole block there, and `mlp-act` is refused. Every layer's
MLP and norms are counted as wrapped, so a layer of another form stops the run instead of being
silently left out.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ...errors import UserError
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


def _fused_mlp_forward(mlp):
    def act_times_up(gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        return up * mlp.activation_fn(gate)

    recompute = _checkpointed(act_times_up)

    def forward(x):
        return mlp.down_proj(recompute(mlp.gate_up_proj(x)))
    return forward


def mlp_form(module) -> str | None:
    """The form of a decoder layer's MLP (architectures.MLP_FORMS), or None for one not known here."""
    if all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return "gated"
    if all(hasattr(module, name) for name in ("gate_up_proj", "down_proj", "activation_fn")):
        return "fused"
    if hasattr(module, "experts"):
        return "moe"
    return None


ACTIVATION_ONLY = {"gated": _gated_mlp_forward, "fused": _fused_mlp_forward}  # the `mlp-act` forms


def _layers(decoder: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(f"layers.{i}", layer) for i, layer in enumerate(getattr(decoder, "layers", None) or ())]


def apply(decoder: torch.nn.Module, policy: str) -> int:
    """Wrap the decoder's norms and MLPs as `policy` says (POLICIES); returns the modules wrapped.
    Wrapping is per instance (module.forward), so parameters, hooks (DDP, ZeRO-3) and state dicts
    are untouched; applying again replaces the earlier policy (a model reused by several
    trainers is never wrapped twice). A layer whose MLP or norms the policy cannot wrap is
    refused by name (UserError) rather than left as it is."""
    kinds = _kinds(policy)
    wrap_mlp = bool({"mlp", "mlp-act"} & kinds)
    mlps = {id(getattr(layer, "mlp", None)) for _, layer in _layers(decoder)}
    wrapped = 0
    for name, module in decoder.named_modules():
        if "_orpo_plain_forward" in module.__dict__:  # undo an earlier policy
            module.forward = module.__dict__.pop("_orpo_plain_forward")
            if module.forward == getattr(type(module), "forward").__get__(module):
                del module.forward
        plain = module.forward
        if "norms" in kinds and _is_norm(module):
            module.forward = _checkpointed(plain)
        elif wrap_mlp and id(module) in mlps:
            form = mlp_form(module)
            if "mlp" in kinds:
                module.forward = _checkpointed(plain)
            elif form in ACTIVATION_ONLY:
                module.forward = ACTIVATION_ONLY[form](module)
            else:
                why = ("its experts compute theirs inside one module" if form == "moe"
                       else "an MLP of a form the fast step does not know")
                raise UserError(f"orpo_activation_checkpointing {policy!r}: {name} ({type(module).__name__}) has no "
                                f"activation to recompute alone ({why}); use 'mlp' (the whole block) or 'norms'")
        else:
            continue
        module._orpo_plain_forward = plain
        wrapped += 1
    _check_every_layer(decoder, kinds)
    return wrapped


def _check_every_layer(decoder: torch.nn.Module, kinds: set[str]) -> None:
    for name, layer in _layers(decoder):
        missing = []
        mlp = getattr(layer, "mlp", None)
        if {"mlp", "mlp-act"} & kinds and "_orpo_plain_forward" not in getattr(mlp, "__dict__", {}):
            missing.append("`mlp` module")
        if "norms" in kinds and not any("_orpo_plain_forward" in m.__dict__ for m in layer.modules() if _is_norm(m)):
            missing.append("RMSNorm")
        if missing:
            raise UserError(
                f"the fast step's activation checkpointing found no {' or '.join(missing)} in {name} "
                f"({type(layer).__name__}); set orpo_activation_checkpointing: none (or orpo_step: stock)")

"""Activations an ORPO step keeps for backward, per strategy family. Method: docs/planner.md."""

from __future__ import annotations

from ..model_shape import ModelShape, lora_target_groups
from .spec import Assumptions, Hardware, Workload, weight_bytes


def checkpoint_kinds(workload: Workload) -> set[str]:
    """What the fast step recomputes inside each layer (none for TRL's step, or under HF's
    whole-layer gradient checkpointing, which takes precedence)."""
    if not workload.fast_step or workload.gradient_checkpointing or workload.checkpoint_policy == "none":
        return set()
    return set(workload.checkpoint_policy.split("+"))


def activation_bytes(shape: ModelShape, method: str, hardware: Hardware, workload: Workload,
                     a: Assumptions, zero3_linear: bool = False) -> tuple[float, dict[str, float]]:
    """Bytes of activations autograd keeps for backward in one micro-step (2 x micro-batch sequences).

    Per token and decoder layer, counted from what each op saves (checked against autograd's saved
    tensors in tests/test_planner.py). Llama/Mistral/Qwen2/Mixtral layers with SDPA attention:
      RMSNorm x2    fp32 input (4h) + rsqrt; full FT also its normalised input and output (2 x s*h)
      attention     q, k, v (k/v repeated to all heads: a mask is passed) and output: 4 x s*q_dim,
                    fp32 log-sum-exp per head, and the attention mask converted per layer (L x s)
      MLP           SiLU input and output, up projection: 3 x s*I; full FT also down_proj's input
      MoE           per routed token (top-k): expert input, gate_up, act, product, output
      LoRA          per adapted linear: its fp32 input (dropout output + mask when dropout > 0, a cast
                    copy when the compute dtype is 16-bit) and its r-sized A output
      QLoRA         bitsandbytes keeps each 4-bit linear's input in the compute dtype
    ZeRO-3 (zero3_linear)  DeepSpeed replaces torch.nn.functional.linear with its own autograd
                  function, which saves every linear's input, frozen or not: under LoRA the
                  frozen linears' inputs no adapter keeps, and lm_head's input, become saved too
    Gradient checkpointing keeps only each layer's input (s*h per token) and recomputes one layer
    at a time in backward (+ that layer's full activations).
    The fast step's finer policies (orpo_activation_checkpointing, orpo/fast/checkpointing.py):
      norms         each RMSNorm keeps its input only (s*h; full FT: its output, the next linear's input)
      mlp-act       the MLP keeps gate and up, not the activation between them: 2 x s*I (+ down's input)
      mlp           the MLP keeps its input only (+ one MLP's activations while it is recomputed);
                    modelled exactly for full fine-tuning, LoRA adapters inside the MLP counted as kept
    """
    w = weight_bytes(hardware, workload)
    s = w  # activations in the weights' dtype (bf16 on GPUs, fp32 on CPU)
    h, q, inter = shape.hidden_size, shape.q_dim, shape.intermediate_size
    L = workload.max_length
    tokens = 2 * workload.micro_batch * L
    full = method == "full"
    cuda = hardware.device == "cuda"
    # QLoRA on GPUs: PEFT's k-bit preparation keeps the norms in fp32, so their outputs are fp32.
    s_norm_out = 4 if (method == "qlora" and cuda) else s
    policy = checkpoint_kinds(workload)
    if "norms" in policy:
        norms = 2 * s * h + (2 * s * h if full else 0)
    else:
        norms = 2 * (4 * h + 4) + (2 * 2 * s * h if full else 0)
    attention = 4 * s * q + 4 * shape.num_heads + L * s
    mlp_recomputed = 0.0  # one MLP's activations, alive while the backward recomputes it
    if shape.num_experts:
        k = max(shape.experts_per_token, 1)
        mlp = k * s * ((2 * h + 4 * inter) if full else (h + 3 * inter)) + 4 * shape.num_experts
    elif "mlp" in policy:
        mlp, mlp_recomputed = (0 if full else s * h), s * (4 * inter if full else 3 * inter)
    elif "mlp-act" in policy:
        mlp = s * (3 * inter if full else 2 * inter)
    else:
        mlp = s * (4 * inter if full else 3 * inter)
    adapters = 0.0
    if not full:
        adapters = _lora_activation_bytes(shape, method, workload, a, s, s_norm_out, cuda)
    per_layer = norms + attention + mlp + adapters
    post = 4 * h + 4 + (2 * s * h if full else 0)  # final norm (+ lm_head's input when trainable)
    if zero3_linear and not full:  # full fine-tuning saves every linear's input already
        per_layer += _zero3_frozen_linear_inputs(shape, method, workload, a, s, s_norm_out)
        post += s_norm_out * h  # lm_head's input, the final norm's output
    pre = 8  # input ids
    if workload.gradient_checkpointing:
        kept = shape.num_layers * s * h + per_layer  # layer inputs + one layer recomputed
    else:
        kept = shape.num_layers * per_layer + mlp_recomputed
    total = tokens * (pre + kept + post)
    detail = {"tokens": tokens, "per_token_per_layer": per_layer, "per_token_checkpointed_layer": s * h,
              "per_token_outside_layers": pre + post}
    return total, detail


# How each LoRA/QLoRA-adapted linear's input relates to tensors already kept:
#   attn_in (q/k/v share the attention norm's output), attn_out (o_proj's input IS the attention
#   output SDPA keeps), mlp_in (gate/up share the MLP norm's output), mlp_mid (down_proj's input).
_INPUT_GROUP = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "attn_out",
                "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "mlp_mid"}


def _lora_activation_bytes(shape, method, workload, a, s, s_norm_out, cuda) -> float:
    """Per token per decoder layer: what LoRA adapters (and QLoRA's 4-bit linears) keep."""
    sa = a.lora_adapter_bytes
    mask = a.dropout_mask_bytes_cuda if cuda else sa  # bool mask on GPUs; CPU dropout keeps a float mask
    targets = {g.name: g for g in lora_target_groups(shape, workload.lora_targets) if g.in_layers}
    per_layer_count = lambda g: g.count / max(shape.num_layers, 1)  # noqa: E731
    total = 0.0
    shared_counted: set[str] = set()
    group_dtype = {"attn_in": s_norm_out, "mlp_in": s_norm_out, "attn_out": s, "mlp_mid": s}
    group_in = {"attn_in": shape.hidden_size, "mlp_in": shape.hidden_size, "attn_out": shape.q_dim,
                "mlp_mid": shape.intermediate_size}
    already_kept = {"attn_out"}  # SDPA keeps its output, which is o_proj's input
    # QLoRA: every quantised linear of a dense decoder keeps its input in the compute dtype s.
    if method == "qlora":
        quantised = [g for g in shape.linear_groups if g.in_layers and g.name in _INPUT_GROUP]
        for g in quantised:
            grp = _INPUT_GROUP[g.name]
            if grp in already_kept:
                continue
            if group_dtype[grp] == s:
                if grp not in shared_counted:
                    shared_counted.add(grp)
                    total += s * group_in[grp]
            else:  # each 4-bit linear casts its fp32 input to the compute dtype: one copy each
                total += s * g.in_features * per_layer_count(g)
    for name, g in targets.items():
        grp = _INPUT_GROUP.get(name)
        count = per_layer_count(g)
        if workload.lora_dropout > 0:
            total += count * (sa + mask) * g.in_features  # dropout output (A's input) + mask
        elif grp is not None and group_dtype[grp] == sa:
            if grp not in already_kept and grp not in shared_counted:
                shared_counted.add(grp)
                total += sa * g.in_features  # the fp32 input itself, shared by the group
        else:
            total += count * sa * g.in_features  # a cast copy per adapted linear
        total += count * sa * workload.lora_r  # A's output, kept by B
    return total


def _zero3_frozen_linear_inputs(shape, method, workload, a, s, s_norm_out) -> float:
    """Per token per decoder layer: inputs of frozen linears that DeepSpeed's ZeRO-3 linear saves and
    nothing else keeps. QLoRA's 4-bit linears are bitsandbytes matmuls (not F.linear) and keep their
    input already; o_proj's input (attn_out) is the attention output SDPA keeps."""
    if method != "lora":
        return 0.0
    targets = {g.name for g in lora_target_groups(shape, workload.lora_targets) if g.in_layers}
    width = {"attn_in": shape.hidden_size, "mlp_in": shape.hidden_size, "mlp_mid": shape.intermediate_size}
    dtype = {"attn_in": s_norm_out, "mlp_in": s_norm_out, "mlp_mid": s}
    total = 0.0
    for grp in width:
        names = {name for name, g in _INPUT_GROUP.items() if g == grp}
        if not names & {g.name for g in shape.linear_groups if g.in_layers}:
            continue
        # An adapter on this input with no dropout keeps the very same fp32 tensor.
        kept = bool(targets & names) and workload.lora_dropout == 0 and dtype[grp] == a.lora_adapter_bytes
        if not kept:
            total += dtype[grp] * width[grp]
    return total

"""What one fast ORPO step keeps for its backward, by module kind: where checkpointing would pay.

    .venv/bin/python benchmarks/activation_memory.py --dataset_name ../shared/data/hh-rlhf-harmless-base/test.jsonl.gz \\
        --per_device_train_batch_size 8 --max_length 1024 --use_peft false

Runs the fast step's forward once (same recipe overrides as orpo_step_profile.py) with autograd's
saved-tensor hooks on: every tensor saved for the backward is counted once (by storage) and put
to the innermost module running when it was saved (weights, which the backward
also keeps, are left out): attention (the attention module's own work:
rotary, SDPA and its outputs), its projections (q/k/v/o), the MLP's projections, the MLP's
activation, norms, the head, and the rest. Prints MiB per kind, per layer and in total, and the
packed batch's shape (rows x width, the share of padding).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import torch

from orpo_step_profile import build

KINDS = (("q_proj", "attention projections"), ("k_proj", "attention projections"), ("v_proj", "attention projections"),
         ("o_proj", "attention projections"), ("self_attn", "attention (rotary, SDPA)"),
         ("gate_proj", "MLP projections"), ("up_proj", "MLP projections"), ("down_proj", "MLP projections"),
         ("act_fn", "MLP activation"), ("mlp", "MLP activation"), ("norm", "norms"), ("lm_head", "head"),
         ("embed_tokens", "embeddings"))


def kind_of(name: str) -> str:
    last = name.rsplit(".", 1)[-1]
    for key, kind in KINDS:
        if key in last:
            return kind
    return "other (outside any layer: head chunks, loss)"


def saved_bytes_by_kind(trainer, batch) -> tuple[dict[str, int], int]:
    model = trainer.model
    model.train()
    stack: list[str] = []
    hooks = []
    def enter(name):
        def hook(_module, _args):
            stack.append(name)  # returns None: a hook's return value would replace the inputs
        return hook

    def leave(_module, _args, _output):
        stack.pop()  # returns None: a value would replace the module's output

    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(enter(name)))
        hooks.append(module.register_forward_hook(leave))
    # Weights are saved for the backward too (as themselves or as views): they are not activations.
    seen: set[int] = {p.untyped_storage().data_ptr() for p in model.parameters()}
    by_kind: dict[str, int] = defaultdict(int)

    def pack(tensor):
        if isinstance(tensor, torch.Tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen and storage.nbytes():
                seen.add(storage.data_ptr())
                by_kind[kind_of(stack[-1]) if stack else "other (outside any layer: head chunks, loss)"] += storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outputs = trainer.policy_output(model, batch)
    finally:
        for h in hooks:
            h.remove()
    del outputs
    layers = sum(1 for n, _ in model.named_modules() if n.endswith("self_attn"))
    return dict(by_kind), layers


def main(argv: list[str]) -> int:
    trainers, batch, training, _ = build(argv, ("fast",))
    trainer = trainers["fast"]
    by_kind, layers = saved_bytes_by_kind(trainer, batch)
    packed = trainer.forward.last_packed
    rows, width = packed.input_ids.shape
    padding = 1 - packed.unique_tokens / packed.input_ids.numel()
    total = sum(by_kind.values())
    print(f"fast step, batch {training.per_device_train_batch_size}, max_length {training.max_length}: packed "
          f"{rows} rows x {width} ({padding:.0%} padding), {packed.target_tokens.numel()} head targets, "
          f"{layers} layers; tensors saved for the backward:")
    print(f"{'':44}{'MiB':>9}{'per layer':>11}{'share':>8}")
    for kind, size in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind:44}{size / 2**20:9.0f}{size / 2**20 / layers:11.1f}{size / total:8.0%}")
    print(f"{'total':44}{total / 2**20:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

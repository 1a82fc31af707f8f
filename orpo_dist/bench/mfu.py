"""Model FLOPs utilisation for `orpo-dist bench`: how close a step runs to the machine.

Model FLOPs are the work ORPO needs, the same for both arms whatever either computes on top:
6 x the non-embedding parameters x the unique tokens (a pair's shared prompt counted once; the
forward's 2 and the backward's 4 FLOPs per parameter and token; attention's own products left
out, as usual), plus the vocabulary projection, 6 x hidden x vocab, at the positions whose
log-prob ORPO uses (where the fast step runs its head). The peak they are divided by: on a GPU the
device's dense bf16 tensor-core rate (its data sheet, or a bf16 matmul probe for a device not in
the table), times the processes; on a CPU the fp32 matmul rate of the whole machine, measured by a
probe in the same run before the arms start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, FLOP/s. Matched as
# substrings of torch.cuda.get_device_name(), the first match wins (most specific first).
GPU_BF16_PEAK = (
    ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("H200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12),
)


@dataclass(frozen=True)
class Peak:
    flops_per_s: float  # for the whole layout: every process together
    source: str  # how it was obtained, for the table and the JSON


def model_flops(shape, unique_tokens: int, pairs: int) -> float:
    """ORPO's model FLOPs for `pairs` pairs of `unique_tokens` (shape: the planner's ModelShape of
    the recipe's model). The head is needed at every unique position but each pair's first (the
    positions the fast step runs it at: each predicts the next token of chosen or rejected)."""
    body = shape.total_params - shape.embedding_params - shape.lm_head_params
    head_positions = max(unique_tokens - pairs, 0)
    return 6.0 * body * unique_tokens + 6.0 * shape.hidden_size * shape.vocab_size * head_positions


def _matmul_rate(device: str, dtype, size: int, seconds: float = 1.0) -> float:
    """Best FLOP/s of size x size matmuls over about `seconds` (after one warm-up product)."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = max(best, 2.0 * size ** 3 / (time.perf_counter() - start))
    return best


def machine_peak(num_processes: int) -> Peak:
    """The peak the layout can reach: GPUs by their bf16 rate, else this machine's fp32 matmuls."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, flops in GPU_BF16_PEAK:
            if key in name:
                return Peak(flops * num_processes, f"{name} bf16 data sheet {flops / 1e12:.0f} TFLOP/s x {num_processes}")
        flops = _matmul_rate("cuda", torch.bfloat16, 8192)
        return Peak(flops * num_processes, f"{name} bf16 matmul probe {flops / 1e12:.0f} TFLOP/s x {num_processes}")
    flops = _matmul_rate("cpu", torch.float32, 1024)
    return Peak(flops, f"this machine's fp32 matmul probe, {flops / 1e9:.0f} GFLOP/s on {torch.get_num_threads()} "
                       "threads (all processes share it)")

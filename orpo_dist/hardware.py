"""What the hardware changes, in one place: for a run (precision, the collective backend, CPU
processes standing in for GPUs, the process group's timeout) and for its launch (threads per
process, DeepSpeed's accelerator). torch is imported inside the training-side functions only: the
launching layer reads cpu_launch_env without it."""

from __future__ import annotations

import os

from .errors import UserError
from .strategies import DEEPSPEED, FSDP2, running_engine

# Expert escape hatch (and the tests' way to reproduce the unsynchronised-DDP trap): 0 leaves the
# precision and device fields exactly as the recipe says.
AUTO_DEVICE_VARIABLE = "ORPO_DIST_AUTO_DEVICE"
BF16_ON_CPU = ("bf16 is set but there is no GPU here (bf16 on this CPU is 20-40x slower than fp32).\n"
               "  Remove `bf16` from the recipe (it is then chosen by hardware) or pass --bf16 false.")


def gpu_has_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def default_bf16(fp16: bool, use_cpu: bool) -> bool:
    """bf16 unless fp16 is asked for, where the GPU has it (TRL's rule raises on a CPU)."""
    return not fp16 and not use_cpu and gpu_has_bf16()


def cpu_launch_env(engine: str, num_processes: int, num_machines: int) -> dict[str, str]:
    """The environment of CPU processes standing in for GPUs: the machine's cores shared among the
    processes, and DeepSpeed's CPU accelerator. (The processes themselves turn on use_cpu / gloo:
    apply_training_policy.)"""
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) * num_machines // num_processes))}
    if engine == DEEPSPEED:
        env["DS_ACCELERATOR"] = "cpu"
    return env


def apply_training_policy(config) -> None:
    """Precision and device of a run's TrainingArguments-like `config`, chosen by the hardware this
    process sees. It runs before TrainingArguments' own __post_init__, which sets up the device
    (and the process group) from use_cpu and ddp_backend; after it, the choice would come too late."""
    import torch

    if os.environ.get(AUTO_DEVICE_VARIABLE, "1") == "0":
        return
    has_cuda = torch.cuda.is_available()
    if config.bf16 is None and not config.fp16:
        config.bf16 = default_bf16(False, not has_cuda)
    if config.bf16 and not has_cuda:
        raise UserError(BF16_ON_CPU)
    if has_cuda:
        return
    if running_engine(config.deepspeed) == DEEPSPEED:
        # DeepSpeed's CPU accelerator talks gloo; without this accelerate checks batch sizes
        # against a world of 1 and fails ("4 != 4 * 1 * 2").
        config.ddp_backend = config.ddp_backend or "gloo"
        return
    # Without use_cpu, `accelerate launch --multi_gpu` on a CPU starts ranks that never
    # synchronise their gradients, silently. With it, DDP runs over gloo.
    config.use_cpu = True
    if start_cpu_process_group(config.ddp_backend or "gloo", config.ddp_timeout):
        # The state now says FSDP (cpu_fsdp.py): transformers must keep it, not reset it.
        config.accelerator_config = {**(config.accelerator_config or {}), "use_configured_state": True}


def start_cpu_process_group(backend: str, timeout_s: int) -> bool:
    """Start the CPU process group with the recipe's ddp_timeout: transformers passes the timeout
    on every path except use_cpu, where collectives would wait torch's default 30 minutes for a
    rank that is gone or cut off. The state is shared, so the Trainer's own setup reuses it.
    Returns whether it also set up FSDP2 on the CPU."""
    fsdp = running_engine() == FSDP2
    if int(os.environ.get("WORLD_SIZE") or 1) < 2 and not fsdp:
        return False
    from datetime import timedelta

    from accelerate import PartialState

    from .cpu_fsdp import reach_fsdp_on_cpu

    PartialState(cpu=True, backend=backend, timeout=timedelta(seconds=timeout_s))
    if fsdp:
        reach_fsdp_on_cpu()
    return fsdp

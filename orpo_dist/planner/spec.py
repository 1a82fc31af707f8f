"""What a plan is asked about: the hardware, the workload, and the memory model's constants.

Checked on construction by validate() (bad input -> UserError naming the flag); no heavy imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..model_rules import DEFAULT_CHECKPOINT_POLICY, DEFAULT_CHUNK_SIZE, DEFAULT_LOGITS_BUDGET_MB, DEFAULT_MAX_LENGTH

GiB = 2**30
DEVICES = ("cuda", "cpu")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Assumptions:
    """The memory model's constants (documented in docs/planner.md); change them per call if needed."""

    margin: float = 0.10  # share of device memory kept free (allocator fragmentation, spikes)
    cuda_overhead_gib: float = 1.0  # CUDA context + cuBLAS/NCCL workspaces, per process
    cpu_process_gib: float = 0.6  # a CPU process's resident baseline: python + torch + transformers + TRL
    zero_cpu_buffer: float = 1.5  # DeepSpeed's additional_buffer_factor for host memory
    nf4_bytes: float = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + fp32 per 256 absmax
    nf4_bytes_plain: float = 0.5 + 4 / 64  # 4 bits + fp32 absmax per 64 (no double quantisation)
    logits_peak_fp32: float = 4.5  # live logits-sized fp32 tensors at the loss's peak (logits included)
    logits_peak_16bit: float = 4.0  # the same for 16-bit logits
    # Fast step: chunk-sized fp32 temporaries live beside its logits term at the head's peak (the
    # next chunk's logits while the last is still bound, logsumexp's exp, the logits' gradient).
    # Counted on live tensors in tests/test_planner.py: 3 for a trained head, 2 for a frozen one.
    fast_head_chunks_trained: float = 3.0
    fast_head_chunks_frozen: float = 2.0
    dropout_mask_bytes_cuda: int = 1  # LoRA dropout keeps a bool mask on GPUs...
    lora_adapter_bytes: int = 4  # PEFT keeps LoRA adapters in fp32 (autocast_adapter_dtype)


@dataclass(frozen=True)
class Hardware:
    gpus_per_node: int = 1
    nodes: int = 1
    gpu_mem_gib: float = 80.0  # per GPU (per process with device="cpu")
    cpu_mem_gib: float | None = None  # host memory per node; None = not checked
    device: str = "cuda"  # "cpu": fp32 processes standing in for GPUs (no CUDA context)

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes

    def validate(self) -> "Hardware":
        for name, value in (("--gpus-per-node", self.gpus_per_node), ("--nodes", self.nodes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number of at least 1, got {value!r}"
                                + (" (plan for at least one GPU; use --device cpu for CPU processes)"
                                   if name == "--gpus-per-node" else ""))
        if not _positive(self.gpu_mem_gib):
            raise UserError(f"--gpu-mem must be a positive number of GiB per GPU, got {self.gpu_mem_gib!r} "
                            f"(e.g. --gpu-mem 80 for an 80 GB A100/H100, 24 for an RTX 4090)")
        if self.cpu_mem_gib is not None and not _positive(self.cpu_mem_gib):
            raise UserError(f"--cpu-mem must be a positive number of GiB per node, got {self.cpu_mem_gib!r} "
                            f"(or leave it out to skip the host-memory check)")
        if self.device not in DEVICES:
            raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        return self


@dataclass(frozen=True)
class Workload:
    max_length: int = DEFAULT_MAX_LENGTH  # tokens per sequence (prompt + completion)
    micro_batch: int = 1  # preference pairs per device per step (per_device_train_batch_size)
    grad_accum: int = 1
    gradient_checkpointing: bool = True
    lora_r: int = 16
    lora_targets: Any = None  # None = attention projections, "all-linear", a regex, or a list of names
    lora_dropout: float = 0.05
    optim: str = "adamw_torch_fused"
    double_quant: bool = True  # QLoRA: bnb_4bit_use_double_quant (use_bnb_nested_quant)
    quant_bits: int = 4  # QLoRA base: 4 (nf4/fp4) or 8 (load_in_8bit)
    dtype: str | None = None  # weights dtype; None = bfloat16 on GPUs, float32 on CPU (as orpo-dist loads)
    global_batch: int | None = None  # pairs per optimizer step; None = micro_batch x grad_accum x world
    fast_step: bool = False  # orpo-dist's fast ORPO step: the head runs in chunks, no full logits
    orpo_chunk_size: int = DEFAULT_CHUNK_SIZE  # fast step: positions per head chunk
    orpo_logits_budget_mb: int = DEFAULT_LOGITS_BUDGET_MB  # fast step: fp32 head logits kept when they fit
    checkpoint_policy: str = DEFAULT_CHECKPOINT_POLICY  # fast step: orpo_activation_checkpointing

    def replace(self, **changes) -> "Workload":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Workload":
        for name, value in (("--max-length", self.max_length), ("--batch", self.micro_batch),
                            ("--grad-accum", self.grad_accum), ("--lora-r", self.lora_r)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.global_batch is not None and (not isinstance(self.global_batch, int) or self.global_batch < 1):
            raise UserError(f"--global-batch must be a whole number of at least 1, got {self.global_batch!r}")
        if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
            raise UserError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.dtype is not None and self.dtype not in DTYPE_BYTES and self.dtype != "auto":
            raise UserError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {self.dtype!r}")
        if self.quant_bits not in (4, 8):
            raise UserError(f"quantised base must be 4- or 8-bit, got {self.quant_bits!r}")
        return self


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value != float("inf")


def weight_bytes(hardware: Hardware, workload: Workload) -> int:
    """Bytes per weight as orpo-dist loads the model: bf16 on GPUs, fp32 on CPU, unless a dtype is set."""
    if workload.dtype and workload.dtype != "auto":
        return DTYPE_BYTES[workload.dtype]
    return 4 if hardware.device == "cpu" else 2

"""Per-device memory of an ORPO run under each strategy. Method and assumptions: docs/planner.md.

Model states for full fine-tuning are DeepSpeed's own accounting (its estimate_zero2/zero3
functions), byte for byte. On top of that, what no estimator knows: LoRA / QLoRA (frozen 16-bit
or 4-bit base, small fp32 adapters), ORPO's doubled batch (chosen and rejected stacked: 2 x B
sequences), activations with or without gradient checkpointing, the vocabulary-sized logits and
their loss buffers, communication buffers and the CUDA context.

Every figure is in bytes; peak = overhead + comm buffers + max(forward/backward, optimizer step).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..strategies import (  # fastest first: the recommendation is the first that fits
    DEEPSPEED, FSDP2, NO_OFFLOAD, OPTIMIZER_AND_GRADIENTS, OPTIMIZER_OFFLOAD, REGISTRY, STRATEGIES, Strategy,
)
from ..model_rules import METHODS, keeps_logits
from .activations import activation_bytes
from ..model_shape import ModelShape, lora_params, lora_target_groups
from .spec import GiB, Assumptions, Hardware, Workload, weight_bytes

# Breakdown rows, in display order. model states = the first five (DeepSpeed's figure for full FT).
COMPONENTS = (
    ("frozen_weights", "frozen base weights (16-bit, or 4-bit under QLoRA)"),
    ("trainable_weights", "trainable weights (incl. DeepSpeed's 16-bit copies)"),
    ("gradients", "gradients"),
    ("optimizer_states", "optimizer states (incl. fp32 master weights under DeepSpeed)"),
    ("gathered_layer", "ZeRO-3/FSDP2: layers gathered whole (weights + grads; FSDP2: embeddings and head too)"),
    ("activations", "activations saved for backward (2 x micro-batch sequences)"),
    ("logits", "logits: 2 x B x L x vocab (stock step), one chunk x vocab in fp32 (fast step)"),
    ("loss_buffers", "log-softmax copies and logit gradients at the loss's peak"),
    ("comm_buffers", "DDP gradient buckets / DeepSpeed bucket buffers"),
    ("overhead", "CUDA context and workspaces (CPU: process baseline)"),
)
MODEL_STATES = ("frozen_weights", "trainable_weights", "gradients", "optimizer_states", "gathered_layer")


@dataclass
class StrategyEstimate:
    strategy: str
    available: bool  # a one-process strategy needs exactly one device in all; DDP more than one
    gpu: dict[str, int]  # component -> bytes per device
    peak: int  # bytes per device at the step's peak
    cpu: int  # host bytes per node (offloaded states; DeepSpeed's cold-start figure otherwise)
    cpu_checked: bool  # host memory is part of the fit (offload strategies with --cpu-mem)
    fits: bool
    usable: int  # device bytes available after the safety margin
    reason: str = ""  # why it does not fit / is not available
    notes: list[str] = field(default_factory=list)

    @property
    def model_states(self) -> int:
        """Weights + gradients + optimizer states (+ ZeRO-3's gathered layer), as DeepSpeed estimates them."""
        return sum(self.gpu[k] for k in MODEL_STATES)

    @property
    def headroom(self) -> int:
        return self.usable - self.peak

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "available": self.available, "fits": self.fits,
            "peak_gib": _gib(self.peak), "usable_gib": _gib(self.usable),
            "model_states_gib": _gib(self.model_states), "cpu_per_node_gib": _gib(self.cpu),
            "cpu_checked": self.cpu_checked,
            "breakdown_gib": {k: _gib(v) for k, v in self.gpu.items()},
            "breakdown_bytes": dict(self.gpu), "peak_bytes": self.peak, "cpu_per_node_bytes": self.cpu,
            "reason": self.reason, "notes": list(self.notes),
        }


@dataclass
class Plan:
    shape: ModelShape
    method: str
    hardware: Hardware
    workload: Workload
    assumptions: Assumptions
    trainable_params: int
    lora_targets: tuple[str, ...]  # resolved LoRA target names (empty for full fine-tuning)
    weight_bytes: int  # bytes per 16-bit-or-fp32 weight (2 on GPUs, 4 on CPU)
    estimates: list[StrategyEstimate]
    activation_detail: dict[str, float] = field(default_factory=dict)

    def strategy(self, name: str) -> StrategyEstimate:
        for e in self.estimates:
            if e.strategy == name:
                return e
        raise UserError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")

    @property
    def tokens(self) -> int:
        """Tokens per device per micro-step: chosen and rejected both run, padded to max_length."""
        return 2 * self.workload.micro_batch * self.workload.max_length

    @property
    def global_batch(self) -> int:
        wl = self.workload
        return wl.global_batch or wl.micro_batch * wl.grad_accum * self.hardware.world

    def to_dict(self) -> dict[str, Any]:
        s, hw, wl = self.shape, self.hardware, self.workload
        return {
            "model": {"name": s.name, "source": s.source, "model_type": s.model_type,
                      "total_params": s.total_params, "hidden_size": s.hidden_size, "num_layers": s.num_layers,
                      "num_heads": s.num_heads, "num_kv_heads": s.num_kv_heads, "head_dim": s.head_dim,
                      "intermediate_size": s.intermediate_size, "vocab_size": s.vocab_size,
                      "tie_word_embeddings": s.tie_word_embeddings, "num_experts": s.num_experts,
                      "largest_layer_params": s.largest_layer_params},
            "method": self.method, "trainable_params": self.trainable_params,
            "lora_targets": list(self.lora_targets),
            "hardware": dataclasses.asdict(hw) | {"world": hw.world},
            "workload": _jsonable(dataclasses.asdict(wl)) | {"global_batch": self.global_batch,
                                                            "tokens_per_micro_step": self.tokens},
            "assumptions": dataclasses.asdict(self.assumptions),
            "strategies": [e.to_dict() for e in self.estimates],
            "unit": "GiB = 2**30 bytes",
        }


def _gib(value: float) -> float:
    return round(value / GiB, 3)


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# The memory model (activations: activations.py)
# --------------------------------------------------------------------------------------------

def optimizer_state_bytes(optim: str, state_bytes: int) -> float:
    """Optimizer state per trainable parameter, states held in `state_bytes` floats."""
    o = optim.lower()
    if "8bit" in o:
        return 2.0  # two 8-bit states (bitsandbytes; block constants are negligible)
    if o.startswith("sgd") or "adafactor" in o:
        return 0.0  # plain SGD keeps nothing; Adafactor's factored states are negligible
    if "lion" in o:
        return 1.0 * state_bytes
    return 2.0 * state_bytes  # Adam/AdamW family: exp_avg and exp_avg_sq


def estimate(shape: ModelShape, method: str, hardware: Hardware, workload: Workload,
             assumptions: Assumptions | None = None) -> Plan:
    """Per-device memory of every strategy for this model, method, hardware and workload."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    hardware.validate()
    workload.validate()
    a = assumptions or Assumptions()
    if not 0 <= a.margin < 0.9:
        raise UserError(f"the safety margin must be in [0, 0.9), got {a.margin!r}")
    w = weight_bytes(hardware, workload)
    if method == "full":
        trainable, targets = shape.total_params, ()
        head_trained = True
    else:
        groups = lora_target_groups(shape, workload.lora_targets)
        trainable = lora_params(shape, workload.lora_targets, workload.lora_r)
        targets = tuple(dict.fromkeys(g.name for g in groups))
        head_trained = any(not g.in_layers for g in groups)  # LoRA on the output head
    acts, detail = activation_bytes(shape, method, hardware, workload, a)
    acts_zero3, _ = activation_bytes(shape, method, hardware, workload, a, zero3_linear=True)
    case = _Case(
        shape, method, hardware, workload, a, w, trainable,
        frozen=frozen_bytes(shape, method, w, workload, a),
        adapter_bytes=a.lora_adapter_bytes if method != "full" else w,  # trainable params' own dtype
        logits_tensor=_logits_bytes(shape, workload, w),
        loss_buffers=_loss_buffer_bytes(shape, workload, w, a, head_trained),
    )
    # DeepSpeed's ZeRO-3 replaces the linear layers' autograd (activations.py); FSDP2 does not.
    estimates = [_strategy(s, case, acts_zero3 if s.engine == DEEPSPEED and s.shards_parameters else acts)
                 for s in REGISTRY]
    return Plan(shape, method, hardware, workload, a, trainable, targets, w, estimates, detail)


def _logits_bytes(shape: ModelShape, workload: Workload, w: int) -> int:
    """One logits tensor: the stock step's 2 x B x L x vocab in the compute dtype; the fast step's
    fp32 logits of every target (2 x B x L at most) when they fit orpo_logits_budget_mb and are
    kept for the backward, else one chunk of orpo_chunk_size positions (recomputed)."""
    positions = 2 * workload.micro_batch * workload.max_length
    if workload.fast_step:
        if keeps_logits(positions, shape.vocab_size, workload.orpo_logits_budget_mb * 2**20):
            return positions * shape.vocab_size * 4
        return min(workload.orpo_chunk_size, positions) * shape.vocab_size * 4
    return positions * shape.vocab_size * w


def _loss_buffer_bytes(shape: ModelShape, workload: Workload, w: int, a: Assumptions, head_trained: bool) -> int:
    """Logits-sized temporaries beside the logits at the loss's peak: for the stock step a factor of
    the whole logits tensor; for the fast step a few chunks (the loop works a chunk at a time; a
    frozen head's own backward holds one chunk fewer than autograd through a trained one)."""
    if workload.fast_step:
        chunk = min(workload.orpo_chunk_size, 2 * workload.micro_batch * workload.max_length) * shape.vocab_size * 4
        return int((a.fast_head_chunks_trained if head_trained else a.fast_head_chunks_frozen) * chunk)
    factor = a.logits_peak_fp32 if w == 4 else a.logits_peak_16bit
    return int((factor - 1) * _logits_bytes(shape, workload, w))


def frozen_bytes(shape: ModelShape, method: str, w: int, workload: Workload, a: Assumptions) -> float:
    """The frozen base's bytes (0 for full fine-tuning). QLoRA packs the decoder's nn.Linear weights;
    embeddings, head, norms, biases and fused MoE experts stay in the compute dtype."""
    if method == "full":
        return 0.0
    if method == "lora":
        return float(w * shape.total_params)
    packed = 1.0 if workload.quant_bits == 8 else (a.nf4_bytes if workload.double_quant else a.nf4_bytes_plain)
    return shape.linear_weight_params * packed + shape.other_params * w


def _gathered_layer_bytes(shape: ModelShape, method: str, w: int, workload: Workload, a: Assumptions) -> int:
    """ZeRO-3 gathers one module's full parameters (and, when trainable, its gradients) at a time.
    DeepSpeed counts 4 bytes x the largest layer for full fine-tuning (16-bit weights + grads)."""
    ll = shape.largest_layer_params
    if method == "full":
        return 2 * w * ll
    if method == "qlora" and shape.largest_layer_is_linear:
        packed = 1.0 if workload.quant_bits == 8 else (a.nf4_bytes if workload.double_quant else a.nf4_bytes_plain)
        return int(packed * ll)
    return w * ll


@dataclass(frozen=True)
class _Case:
    """What every strategy's estimate starts from: the run, and the figures derived from it once."""

    shape: ModelShape
    method: str
    hardware: Hardware
    workload: Workload
    assumptions: Assumptions
    weight_bytes: int  # w: bytes per 16-bit-or-fp32 weight
    trainable: int  # trainable parameters
    frozen: float  # bytes of the frozen base (0 for full fine-tuning)
    adapter_bytes: int  # bytes per trainable parameter in its own dtype (fp32 LoRA adapters, w for full FT)
    logits_tensor: int  # bytes of the logits held through the loss (stock: 2 x B x L x vocab)
    loss_buffers: int  # bytes of the loss's temporaries beside them


def _strategy(s: Strategy, case: _Case, activations: float) -> StrategyEstimate:
    """One strategy's estimate, in four named steps: model states, activations and logits, the
    process overhead, then the peak and whether it fits."""
    gpu = dict.fromkeys((k for k, _ in COMPONENTS), 0)
    states = {DEEPSPEED: _deepspeed_states, FSDP2: _fsdp2_states}.get(s.engine, _plain_states)
    cpu, grads_live, notes = states(s, case, gpu)
    gpu["activations"] = int(activations)
    gpu["logits"] = int(case.logits_tensor)
    gpu["loss_buffers"] = case.loss_buffers
    gpu["overhead"] = _overhead(s, case, cpu)
    peak = _peak(gpu, grads_live, case.hardware.device == "cpu")
    return _verdict(s, case, gpu, peak, cpu, notes)


def _deepspeed_states(s: Strategy, case: _Case, gpu: dict[str, int]) -> tuple[int, bool, list[str]]:
    """ZeRO-2/3 model states per device (into `gpu`); returns (host bytes per node, whether
    gradients stay allocated through forward/backward, notes).

    DeepSpeed's accounting (its estimate_zero2/zero3 functions), for the trainable parameters: a
    w-byte copy of the weights (DeepSpeed casts the module to bf16; replicated under ZeRO-2,
    partitioned under ZeRO-3), and partitioned over the N ranks: gradients, an fp32 master copy and
    fp32 optimizer states. For bf16 + Adam that is 2 + 18/N bytes (ZeRO-2) and 18/N (ZeRO-3, the
    16-bit weights included) plus 4 x the largest layer, exactly DeepSpeed's figures.
    """
    shape, method, hw, wl, a = case.shape, case.method, case.hardware, case.workload, case.assumptions
    w, trainable, frozen, n = case.weight_bytes, case.trainable, case.frozen, hw.world
    notes: list[str] = []
    offload_opt = s.offload != NO_OFFLOAD
    states = 8.0 if offload_opt else optimizer_state_bytes(wl.optim, 4)  # fp32 states
    if offload_opt and "8bit" in wl.optim.lower():
        notes.append("offload runs DeepSpeed's CPU AdamW (named in the DeepSpeed config): the recipe's "
                     f"{wl.optim} is not used")
    if s.shards == OPTIMIZER_AND_GRADIENTS:
        grad_b = w + (4 if w != 4 else 0)  # 16-bit grads + their fp32 copy (fp32 training: one)
        gpu["trainable_weights"] = w * trainable
        gpu["gradients"] = int(grad_b * trainable / n)
        gpu["optimizer_states"] = int((grad_b + 4 + states) * trainable / n) - gpu["gradients"]
        gpu["frozen_weights"] = int(frozen)
        if method == "full":  # DeepSpeed's cold-start figure: every process loads the model in fp32
            cpu = int(trainable * 4 * hw.gpus_per_node * a.zero_cpu_buffer)
        else:  # every process loads the (frozen) model as it is stored
            cpu = int(hw.gpus_per_node * (frozen + case.adapter_bytes * trainable))
        gpu["comm_buffers"] = 2 * 2 * shape.hidden_size ** 2  # two reduce buckets of hidden^2 (HF "auto")
        return cpu, True, notes
    gpu["gathered_layer"] = _gathered_layer_bytes(shape, method, w, wl, a)
    gpu["comm_buffers"] = int(2 * (0.9 + 1.0) * shape.hidden_size ** 2)  # prefetch + reduce buckets
    if s.offload == NO_OFFLOAD:
        gpu["trainable_weights"] = int(w * trainable / n)
        gpu["gradients"] = int(4 * trainable / n)
        gpu["optimizer_states"] = (int((w + 4 + 4 + states) * trainable / n)
                                   - gpu["trainable_weights"] - gpu["gradients"])
        gpu["frozen_weights"] = int(frozen / n)
        cpu = int(shape.largest_layer_params * 4 * hw.gpus_per_node * a.zero_cpu_buffer)
    elif s.offload == OPTIMIZER_OFFLOAD:
        gpu["trainable_weights"] = int(w * trainable / n)
        gpu["frozen_weights"] = int(frozen / n)
        # host: fp32 gradients + fp32 master + Adam states = 16 bytes per trainable parameter
        cpu = int((4 + 4 + states) * trainable * (1 / hw.nodes) * a.zero_cpu_buffer)
    else:  # zero3-offload-all: the weights (trainable and frozen) live on the host too
        cpu = int(((w + 4 + 4 + states) * trainable + frozen) * (1 / hw.nodes) * a.zero_cpu_buffer)
    return cpu, True, notes  # DeepSpeed keeps its gradient partitions allocated


def _fsdp2_states(s: Strategy, case: _Case, gpu: dict[str, int]) -> tuple[int, bool, list[str]]:
    """FSDP2 model states per device (into `gpu`); returns like _deepspeed_states.

    Every parameter is sharded over the N ranks in its own dtype, with its gradient and optimizer
    states: accelerate keeps trainable parameters in fp32 under mixed precision (4 + 4 + Adam's 8
    bytes over N); the frozen base keeps its stored dtype. While a decoder layer runs it is
    gathered whole in the compute dtype, with the next one prefetched (and, for full fine-tuning,
    its unsharded gradients before the reduce-scatter); accelerate keeps the embeddings, the final
    norm and the head gathered from the start of the forward to the end of the backward. Offload
    (torch's CPUOffloadPolicy) keeps the shards, their gradients and the optimizer step on the host.
    """
    shape, method, hw, wl, a = case.shape, case.method, case.hardware, case.workload, case.assumptions
    w, trainable, n = case.weight_bytes, case.trainable, hw.world
    adapter = 4 if method == "full" else case.adapter_bytes  # fp32 trainable shards
    states = {"frozen_weights": int(case.frozen / n),
              "trainable_weights": int(adapter * trainable / n),
              "gradients": int(adapter * trainable / n),
              "optimizer_states": int(optimizer_state_bytes(wl.optim, adapter) * trainable / n)}
    full = method == "full"
    tail = shape.vocab_size * shape.hidden_size * (1 if shape.tie_word_embeddings else 2)  # embeddings + head
    layer = (shape.total_params - tail) / max(shape.num_layers, 1)  # one decoder layer's parameters
    stored = w if full else case.frozen / max(shape.total_params, 1)  # bytes per gathered frozen parameter
    # the running layer (weights + gradients when trained), the prefetched next one, and the tail
    # (16-bit or fp32 even under QLoRA), with its gradients when trained
    gpu["gathered_layer"] = int(layer * stored * (2 if full else 1) + layer * stored + tail * w * (2 if full else 1))
    gpu["comm_buffers"] = int(4 * layer / n) if full else 0  # one layer's reduce-scatter output
    if s.offload == NO_OFFLOAD:
        gpu.update(states)
        # The main process loads the model and hands out the shards (accelerate's
        # cpu_ram_efficient_loading); a 4-bit model is loaded by every process.
        copies = hw.gpus_per_node if method == "qlora" else 1
        cpu = int(copies * (case.frozen + case.adapter_bytes * trainable))
    else:
        cpu = int(sum(states.values()) * hw.gpus_per_node * a.zero_cpu_buffer)
    return cpu, wl.grad_accum > 1, []


def _plain_states(s: Strategy, case: _Case, gpu: dict[str, int]) -> tuple[int, bool, list[str]]:
    """single / DDP model states per device (into `gpu`); returns like _deepspeed_states.

    Plain PyTorch. orpo-dist loads the model in bf16 on GPUs (fp32 on CPU), so full fine-tuning
    keeps weights, gradients and Adam states in that dtype (no fp32 master); LoRA adapters are fp32
    (PEFT), and so are their gradients and states.
    """
    adapter, trainable = case.adapter_bytes, case.trainable
    gpu["frozen_weights"] = int(case.frozen)
    gpu["trainable_weights"] = int(adapter * trainable)
    gpu["gradients"] = int(adapter * trainable)
    gpu["optimizer_states"] = int(optimizer_state_bytes(case.workload.optim, adapter) * trainable)
    if s.processes == "many":
        gpu["comm_buffers"] = gpu["gradients"]  # DDP's gradient buckets: a second copy of the gradients
    cpu = int(case.hardware.gpus_per_node * (case.frozen + adapter * trainable))  # each process loads the model
    # Gradients are freed after each optimizer step (zero_grad(set_to_none=True)); with
    # accumulation they live through the next micro-batches' forward and backward.
    return cpu, case.workload.grad_accum > 1, []


def _overhead(s: Strategy, case: _Case, cpu: int) -> int:
    """The process's own memory: CUDA context and workspaces, or a CPU process's baseline."""
    a, hw = case.assumptions, case.hardware
    if hw.device != "cpu":
        return int(a.cuda_overhead_gib * GiB)
    # The figures count tensors, as CUDA's allocator holds them. glibc's malloc can keep freed
    # tensors resident on top (docs/planner.md, "What RSS shows on CPU"); not modelled.
    overhead = int(a.cpu_process_gib * GiB)
    if s.offload != NO_OFFLOAD:
        # On a CPU "device" the offloaded states live in the same RAM as the process.
        overhead += int(cpu / a.zero_cpu_buffer / hw.gpus_per_node)
    return overhead


def _peak(gpu: dict[str, int], grads_live: bool, cpu_device: bool) -> int:
    """overhead + comm buffers + max(forward/backward, optimizer step)."""
    states = sum(gpu[k] for k in ("frozen_weights", "trainable_weights", "optimizer_states", "gathered_layer"))
    logits_all = gpu["logits"] + gpu["loss_buffers"]
    if grads_live:
        forward_backward = states + gpu["gradients"] + gpu["activations"] + logits_all
    elif cpu_device:
        # glibc keeps the freed gradients' memory for the next step's (smaller) activation tensors,
        # while the big logits-sized tensors get fresh pages: resident = max(grads, activations) + logits.
        forward_backward = states + max(gpu["gradients"], gpu["activations"]) + logits_all
    else:  # the CUDA caching allocator reuses the freed gradient blocks for anything
        forward_backward = states + gpu["activations"] + logits_all
    optimizer_step = states + gpu["gradients"]
    return int(gpu["overhead"] + gpu["comm_buffers"] + max(forward_backward, optimizer_step))


def _verdict(s: Strategy, case: _Case, gpu: dict[str, int], peak: int, cpu: int,
             notes: list[str]) -> StrategyEstimate:
    """Is the strategy available for this many devices, and does it fit the device (and, for the
    offload strategies given --cpu-mem, the host)?"""
    hw, a = case.hardware, case.assumptions
    n, cpu_device = hw.world, hw.device == "cpu"
    usable = int(hw.gpu_mem_gib * GiB * (1 - a.margin))
    available, reason = True, ""
    if s.processes == "one" and n != 1:
        available, reason = False, f"needs exactly one device ({n} planned)"
    elif s.processes == "many" and n == 1:
        available, reason = False, "needs more than one device"
    offloads = s.offload != NO_OFFLOAD
    cpu_checked = hw.cpu_mem_gib is not None and offloads and not cpu_device
    fits_gpu = peak <= usable
    fits_cpu = not cpu_checked or cpu <= hw.cpu_mem_gib * GiB * (1 - a.margin)
    if available and not fits_gpu:
        reason = f"needs {peak / GiB:.1f} GiB per device, {usable / GiB:.1f} GiB usable"
    elif available and not fits_cpu:
        reason = f"needs {cpu / GiB:.0f} GiB of host memory per node, {hw.cpu_mem_gib:g} GiB given"
    if offloads and hw.cpu_mem_gib is None and not cpu_device:
        notes.append(f"host memory not checked (pass --cpu-mem): needs about {cpu / GiB:.0f} GiB per node")
    if case.method == "qlora" and case.shape.num_experts and s.shards_parameters:
        notes.append("fused MoE experts are not quantised by bitsandbytes: they stay 16-bit")
    return StrategyEstimate(s.name, available, gpu, int(peak), int(cpu), cpu_checked,
                            available and fits_gpu and fits_cpu, usable, reason, notes)

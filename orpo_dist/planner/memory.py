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
from ..launcher.strategies import DEEPSPEED, STRATEGIES  # fastest first: the recommendation is the first that fits
from .shapes import ModelShape, lora_params, lora_target_groups

GiB = 2**30
METHODS = ("full", "lora", "qlora")
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
    max_length: int = 1024  # tokens per sequence (prompt + completion)
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


# Breakdown rows, in display order. model states = the first five (DeepSpeed's figure for full FT).
COMPONENTS = (
    ("frozen_weights", "frozen base weights (16-bit, or 4-bit under QLoRA)"),
    ("trainable_weights", "trainable weights (incl. DeepSpeed's 16-bit copies)"),
    ("gradients", "gradients"),
    ("optimizer_states", "optimizer states (incl. fp32 master weights under DeepSpeed)"),
    ("gathered_layer", "ZeRO-3: the largest layer gathered whole (weights + grads)"),
    ("activations", "activations saved for backward (2 x micro-batch sequences)"),
    ("logits", "logits: 2 x B x L x vocab in the compute dtype"),
    ("loss_buffers", "log-softmax copies and logit gradients at the loss's peak"),
    ("comm_buffers", "DDP gradient buckets / DeepSpeed bucket buffers"),
    ("overhead", "CUDA context and workspaces (CPU: process baseline)"),
)
MODEL_STATES = ("frozen_weights", "trainable_weights", "gradients", "optimizer_states", "gathered_layer")


@dataclass
class StrategyEstimate:
    strategy: str
    available: bool  # "single" needs exactly one device in all; "ddp" needs more than one
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
# The memory model
# --------------------------------------------------------------------------------------------

def weight_bytes(hardware: Hardware, workload: Workload) -> int:
    """Bytes per weight as orpo-dist loads the model: bf16 on GPUs, fp32 on CPU, unless a dtype is set."""
    if workload.dtype and workload.dtype != "auto":
        return DTYPE_BYTES[workload.dtype]
    return 4 if hardware.device == "cpu" else 2


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
    else:
        groups = lora_target_groups(shape, workload.lora_targets)
        trainable = lora_params(shape, workload.lora_targets, workload.lora_r)
        targets = tuple(dict.fromkeys(g.name for g in groups))
    acts, detail = activation_bytes(shape, method, hardware, workload, a)
    acts_zero3, _ = activation_bytes(shape, method, hardware, workload, a, zero3_linear=True)
    logits_tensor = 2 * workload.micro_batch * workload.max_length * shape.vocab_size * w
    factor = a.logits_peak_fp32 if w == 4 else a.logits_peak_16bit
    estimates = [
        _strategy(s, shape, method, hardware, workload, a, w, trainable,
                  acts_zero3 if s.startswith("zero3") else acts, logits_tensor, factor)
        for s in STRATEGIES
    ]
    return Plan(shape, method, hardware, workload, a, trainable, targets, w, estimates, detail)


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


def _strategy(name, shape, method, hw, wl, a, w, trainable, acts, logits_tensor, logits_factor):
    n, nodes = hw.world, hw.nodes
    cpu_device = hw.device == "cpu"
    frozen = frozen_bytes(shape, method, w, wl, a)
    usable = int(hw.gpu_mem_gib * GiB * (1 - a.margin))
    gpu = dict.fromkeys((k for k, _ in COMPONENTS), 0)
    notes: list[str] = []
    cpu = 0
    adapter = a.lora_adapter_bytes if method != "full" else w  # trainable params' own dtype
    if name in DEEPSPEED:
        # DeepSpeed's accounting (its estimate_zero2/zero3 functions), for the trainable parameters:
        # a w-byte copy of the weights (DeepSpeed casts the module to bf16; replicated under ZeRO-2,
        # partitioned under ZeRO-3), and partitioned over the N ranks: gradients, an fp32 master copy
        # and fp32 optimizer states. For bf16 + Adam that is 2 + 18/N bytes (ZeRO-2) and 18/N (ZeRO-3,
        # the 16-bit weights included) plus 4 x the largest layer, exactly DeepSpeed's figures.
        offload_opt = name in ("zero3-offload", "zero3-offload-all")
        states = 8.0 if offload_opt else optimizer_state_bytes(wl.optim, 4)  # fp32 states
        if offload_opt and "8bit" in wl.optim.lower():
            notes.append("offload runs DeepSpeed's CPU AdamW (named in the DeepSpeed config): the recipe's "
                         f"{wl.optim} is not used")
        if name == "zero2":
            grad_b = w + (4 if w != 4 else 0)  # 16-bit grads + their fp32 copy (fp32 training: one)
            gpu["trainable_weights"] = w * trainable
            gpu["gradients"] = int(grad_b * trainable / n)
            gpu["optimizer_states"] = int((grad_b + 4 + states) * trainable / n) - gpu["gradients"]
            gpu["frozen_weights"] = int(frozen)
            if method == "full":  # DeepSpeed's cold-start figure: every process loads the model in fp32
                cpu = int(trainable * 4 * hw.gpus_per_node * a.zero_cpu_buffer)
            else:  # every process loads the (frozen) model as it is stored
                cpu = int(hw.gpus_per_node * (frozen + adapter * trainable))
            gpu["comm_buffers"] = 2 * 2 * shape.hidden_size ** 2  # two reduce buckets of hidden^2 (HF "auto")
        else:
            gpu["gathered_layer"] = _gathered_layer_bytes(shape, method, w, wl, a)
            gpu["comm_buffers"] = int(2 * (0.9 + 1.0) * shape.hidden_size ** 2)  # prefetch + reduce buckets
            if name == "zero3":
                gpu["trainable_weights"] = int(w * trainable / n)
                gpu["gradients"] = int(4 * trainable / n)
                gpu["optimizer_states"] = (int((w + 4 + 4 + states) * trainable / n)
                                           - gpu["trainable_weights"] - gpu["gradients"])
                gpu["frozen_weights"] = int(frozen / n)
                cpu = int(shape.largest_layer_params * 4 * hw.gpus_per_node * a.zero_cpu_buffer)
            elif name == "zero3-offload":
                gpu["trainable_weights"] = int(w * trainable / n)
                gpu["frozen_weights"] = int(frozen / n)
                # host: fp32 gradients + fp32 master + Adam states = 16 bytes per trainable parameter
                cpu = int((4 + 4 + states) * trainable * (1 / nodes) * a.zero_cpu_buffer)
            else:  # zero3-offload-all: the weights (trainable and frozen) live on the host too
                cpu = int(((w + 4 + 4 + states) * trainable + frozen) * (1 / nodes) * a.zero_cpu_buffer)
        grads_live = True  # DeepSpeed keeps its gradient partitions allocated
    else:
        # single / DDP: plain PyTorch. orpo-dist loads the model in bf16 on GPUs (fp32 on CPU), so
        # full fine-tuning keeps weights, gradients and Adam states in that dtype (no fp32 master);
        # LoRA adapters are fp32 (PEFT), and so are their gradients and states.
        gpu["frozen_weights"] = int(frozen)
        gpu["trainable_weights"] = int(adapter * trainable)
        gpu["gradients"] = int(adapter * trainable)
        gpu["optimizer_states"] = int(optimizer_state_bytes(wl.optim, adapter) * trainable)
        if name == "ddp":
            gpu["comm_buffers"] = gpu["gradients"]  # DDP's gradient buckets: a second copy of the gradients
        cpu = int(hw.gpus_per_node * (frozen + adapter * trainable))  # each process loads the model first
        # Gradients are freed after each optimizer step (zero_grad(set_to_none=True)); with
        # accumulation they live through the next micro-batches' forward and backward.
        grads_live = wl.grad_accum > 1
    gpu["activations"] = int(acts)
    gpu["logits"] = int(logits_tensor)
    gpu["loss_buffers"] = int((logits_factor - 1) * logits_tensor)
    if cpu_device:
        # The figures count tensors, as CUDA's allocator holds them. glibc's malloc can keep freed
        # tensors resident on top (docs/planner.md, "What RSS shows on CPU"); not modelled.
        gpu["overhead"] = int(a.cpu_process_gib * GiB)
        if name in ("zero3-offload", "zero3-offload-all"):
            # On a CPU "device" the offloaded states live in the same RAM as the process.
            gpu["overhead"] += int(cpu / a.zero_cpu_buffer / hw.gpus_per_node)
    else:
        gpu["overhead"] = int(a.cuda_overhead_gib * GiB)
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
    peak = gpu["overhead"] + gpu["comm_buffers"] + max(forward_backward, optimizer_step)
    available, reason = True, ""
    if name == "single" and n != 1:
        available, reason = False, f"needs exactly one device ({n} planned)"
    elif name == "ddp" and n == 1:
        available, reason = False, "needs more than one device"
    cpu_checked = hw.cpu_mem_gib is not None and name in ("zero3-offload", "zero3-offload-all") and not cpu_device
    fits_gpu = peak <= usable
    fits_cpu = not cpu_checked or cpu <= hw.cpu_mem_gib * GiB * (1 - a.margin)
    if available and not fits_gpu:
        reason = f"needs {peak / GiB:.1f} GiB per device, {usable / GiB:.1f} GiB usable"
    elif available and not fits_cpu:
        reason = f"needs {cpu / GiB:.0f} GiB of host memory per node, {hw.cpu_mem_gib:g} GiB given"
    if name in ("zero3-offload", "zero3-offload-all") and hw.cpu_mem_gib is None and not cpu_device:
        notes.append(f"host memory not checked (pass --cpu-mem): needs about {cpu / GiB:.0f} GiB per node")
    if method == "qlora" and shape.num_experts and name.startswith("zero3"):
        notes.append("fused MoE experts are not quantised by bitsandbytes: they stay 16-bit")
    return StrategyEstimate(name, available, gpu, int(peak), int(cpu), cpu_checked,
                            available and fits_gpu and fits_cpu, usable, reason, notes)


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
    norms = 2 * (4 * h + 4) + (2 * 2 * s * h if full else 0)
    attention = 4 * s * q + 4 * shape.num_heads + L * s
    if shape.num_experts:
        k = max(shape.experts_per_token, 1)
        mlp = k * s * ((2 * h + 4 * inter) if full else (h + 3 * inter)) + 4 * shape.num_experts
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
        kept = shape.num_layers * per_layer
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

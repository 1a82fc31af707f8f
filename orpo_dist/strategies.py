"""The launch strategies, one record each: the one home of everything a strategy means.

The CLI choices, `--strategy auto` and the memory planner, the accelerate command, elastic resume
and Slurm all read these records; none of them tests a strategy's name. Adding a strategy is one
entry below plus its accelerate config (and DeepSpeed JSON) in orpo_dist/configs/, which ship
inside the package so that a plain `pip install` can launch. No heavy imports: every layer (the
training core, the planner, the launchers) may read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import UserError



@dataclass(frozen=True)
class Engine:
    """What accelerate runs a strategy on, and how its checkpoints move to another process count:
    plain and FSDP2 checkpoints load as they are (FSDP2's are torch DCP shards, resharded on load);
    DeepSpeed refuses ZeRO shards of another world size, which are converted once to its universal
    checkpoint (elastic.py)."""

    name: str
    label: str
    universal_conversion: bool = False


PLAIN, DEEPSPEED, FSDP2 = "plain", "deepspeed", "fsdp2"
ENGINES = {e.name: e for e in (Engine(PLAIN, "plain PyTorch (one process or DDP)"),
                               Engine(DEEPSPEED, "DeepSpeed ZeRO", universal_conversion=True),
                               Engine(FSDP2, "FSDP2"))}
# What the strategy splits over the processes (the rest every process holds whole).
NOTHING, OPTIMIZER_AND_GRADIENTS, EVERYTHING = "nothing", "optimizer state + gradients", "parameters too"
# What lives in host memory instead of on the device.
NO_OFFLOAD, OPTIMIZER_OFFLOAD, FULL_OFFLOAD = "none", "optimizer state", "optimizer state and parameters"


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str  # for tables
    engine: str  # PLAIN (one process or DDP), DEEPSPEED or FSDP2
    shards: str  # NOTHING, OPTIMIZER_AND_GRADIENTS or EVERYTHING
    offload: str  # NO_OFFLOAD, OPTIMIZER_OFFLOAD or FULL_OFFLOAD
    use_for: str  # README's strategy table
    processes: str = "any"  # "one": exactly one process; "many": more than one; "any"

    @property
    def accelerate_config(self) -> Path:
        return configs_dir() / "accelerate" / f"{self.name}.yaml"

    @property
    def deepspeed_config(self) -> Path | None:
        return configs_dir() / "deepspeed" / f"{self.name}.json" if self.engine == DEEPSPEED else None

    @property
    def shards_parameters(self) -> bool:
        return self.shards == EVERYTHING


# Fastest first: the planner recommends the first that fits. When FSDP2 and ZeRO-3 both fit, FSDP2
# is preferred: torch's own engine, its checkpoints reshard to another process count as they are
# (no conversion), and the one published large ORPO run (Zephyr-141B) used FSDP where ZeRO-3 hung.
REGISTRY = (
    Strategy("single", "single GPU", PLAIN, NOTHING, NO_OFFLOAD, "one GPU (e.g. 8B QLoRA on 24 GB)", processes="one"),
    Strategy("ddp", "DDP", PLAIN, NOTHING, NO_OFFLOAD, "models that fit one GPU, several GPUs", processes="many"),
    Strategy("zero2", "ZeRO-2", DEEPSPEED, OPTIMIZER_AND_GRADIENTS, NO_OFFLOAD, "full fine-tunes that almost fit"),
    Strategy("fsdp2", "FSDP2", FSDP2, EVERYTHING, NO_OFFLOAD,
             "8B full fine-tune on 8 GPUs, 70B LoRA/QLoRA; reshardable checkpoints"),
    Strategy("zero3", "ZeRO-3", DEEPSPEED, EVERYTHING, NO_OFFLOAD, "8B full fine-tune on 8 GPUs, 70B LoRA/QLoRA"),
    Strategy("zero3-offload", "ZeRO-3 + opt offload", DEEPSPEED, EVERYTHING, OPTIMIZER_OFFLOAD,
             "when GPU memory is short"),
    Strategy("fsdp2-offload", "FSDP2 + offload", FSDP2, EVERYTHING, FULL_OFFLOAD,
             "FSDP2 when GPU memory is short: the step runs on the host"),
    Strategy("zero3-offload-all", "ZeRO-3 + full offload", DEEPSPEED, EVERYTHING, FULL_OFFLOAD, "the last resort"),
)
STRATEGIES = tuple(s.name for s in REGISTRY)  # the names, fastest first (CLI choices)
AUTO = "auto"  # the planner picks (launch, submit)
ONE_PROCESS = next(s.name for s in REGISTRY if s.processes == "one")  # `orpo-dist bench`'s default
# `orpo-dist submit`'s default: a login node cannot measure the job's GPUs, which auto needs
# (--gpu-mem); the strategy that shards everything without offload is the safe first choice.
SUBMIT_DEFAULT = "zero3"


def strategy(name: str) -> Strategy:
    for s in REGISTRY:
        if s.name == name:
            return s
    raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)} or {AUTO}")


def configs_dir() -> Path:
    """orpo_dist/configs/ of the installed package (a real folder: setuptools installs it unzipped)."""
    return Path(str(resources.files("orpo_dist") / "configs"))


def running_engine(recipe_deepspeed=None, environ=None) -> str:
    """The engine this training process runs on: DeepSpeed from the recipe's `deepspeed` field or
    from `accelerate launch`'s config file, FSDP2 from the latter, else PLAIN. (accelerate launch
    passes the config file's choice to each process in these variables.)"""
    import os

    env = os.environ if environ is None else environ
    if recipe_deepspeed or env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return DEEPSPEED
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        if env.get("FSDP_VERSION", "1") != "2":
            raise UserError("this process was launched with FSDP version 1; orpo-dist runs FSDP2 "
                            "(fsdp_version: 2 in the accelerate config, as orpo-dist launch --strategy fsdp2 does)")
        return FSDP2
    return PLAIN


def with_engine(engine: str) -> tuple[str, ...]:
    """The strategies that run on `engine` (for messages: which strategies can resume a checkpoint)."""
    return tuple(s.name for s in REGISTRY if s.engine == engine)

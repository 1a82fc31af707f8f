"""The launch strategies: their names, which run under DeepSpeed, and their config files.

The one home of these facts: `orpo-dist launch`/`submit` build commands from it and the memory
planner estimates the same strategies in the same order (fastest first: the planner recommends
the first that fits). The config files ship inside the package (orpo_dist/configs/), so a plain
`pip install` can launch; the repo keeps them at the same path for reading and copying.
No heavy imports here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Fastest first.
STRATEGIES = ("single", "ddp", "zero2", "zero3", "zero3-offload", "zero3-offload-all")
DEEPSPEED = ("zero2", "zero3", "zero3-offload", "zero3-offload-all")
LABELS = {
    "single": "single GPU",
    "ddp": "DDP",
    "zero2": "ZeRO-2",
    "zero3": "ZeRO-3",
    "zero3-offload": "ZeRO-3 + opt offload",
    "zero3-offload-all": "ZeRO-3 + full offload",
}


def configs_dir() -> Path:
    """orpo_dist/configs/ of the installed package (a real folder: setuptools installs it unzipped)."""
    return Path(str(resources.files("orpo_dist") / "configs"))


def accelerate_config(strategy: str) -> Path:
    return configs_dir() / "accelerate" / f"{strategy}.yaml"


def deepspeed_config(strategy: str) -> Path | None:
    """The DeepSpeed JSON of a ZeRO strategy (None for single/ddp)."""
    return configs_dir() / "deepspeed" / f"{strategy}.json" if strategy in DEEPSPEED else None

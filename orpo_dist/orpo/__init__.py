"""orpo-dist's own ORPO (Hong et al. 2024): OrpoConfig and OrpoTrainer, on transformers' Trainer.

    from orpo_dist.orpo import OrpoConfig, OrpoTrainer

TRL's `trl.experimental.orpo.ORPOTrainer` is what the tests compare it against; nothing here
imports it. The config is light (the launchers read recipes through it); the trainer loads on
first use.
"""

from __future__ import annotations

from .config import STEPS, OrpoConfig

__all__ = ["STEPS", "OrpoConfig", "OrpoTrainer"]


def __getattr__(name: str):
    if name == "OrpoTrainer":
        from .trainer import OrpoTrainer

        return OrpoTrainer
    raise AttributeError(name)

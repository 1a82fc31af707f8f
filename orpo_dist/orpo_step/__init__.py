"""orpo-dist's own ORPO step (TRL's loss and metrics; every unique token through the model once,
no full-vocabulary logits) and the switch that picks it or TRL's stock step.

    from orpo_dist.orpo_step import trainer_class
    cls, extra = trainer_class(training_args, model, log=print)
    trainer = cls(model=model, args=training_args, ..., **extra)
"""

from __future__ import annotations

from .select import STEPS, use_fast_step

__all__ = ["STEPS", "trainer_class"]


def trainer_class(training, model, log=print):
    """(trainer class, extra constructor kwargs) for the recipe's `orpo_step`."""
    config = model.config
    fast = use_fast_step(
        training.orpo_step, config, training.completion_only_nll,
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        aux_loss=bool(getattr(config, "output_router_logits", False)), log=log,
    )
    if not fast:
        from trl.experimental.orpo import ORPOTrainer

        return ORPOTrainer, {}
    from .trainer import FastOrpoTrainer

    return FastOrpoTrainer, {"chunk_size": training.orpo_chunk_size,
                             "completion_only_nll": training.completion_only_nll}

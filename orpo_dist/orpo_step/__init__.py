"""orpo-dist's own ORPO step (TRL's loss and metrics; every unique token through the model once,
no full-vocabulary logits) and the switch that picks it or TRL's stock step.

    from orpo_dist.orpo_step import trainer_class
    cls, extra = trainer_class(training_args, model, log=print)
    trainer = cls(model=model, args=training_args, ..., **extra)
"""

from __future__ import annotations

from .select import STEPS, attention_for_device, use_fast_step

__all__ = ["STEPS", "fast_step_kwargs", "trainer_class"]


def trainer_class(training, model, log=print, requested_attention: str | None = None):
    """(trainer class, extra constructor kwargs) for the recipe's `orpo_step`. On GPUs the fast
    step switches a model left on SDPA (`requested_attention` None) to FlexAttention."""
    import torch

    config = model.config
    device_type = "cuda" if torch.cuda.is_available() and not training.use_cpu else "cpu"
    fast = use_fast_step(
        training.orpo_step, config, training.completion_only_nll,
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        aux_loss=bool(getattr(config, "output_router_logits", False)), log=log, device_type=device_type,
    )
    if fast and (attention := attention_for_device(config, device_type, requested_attention)):
        model.set_attn_implementation(attention)
        log(f"fast ORPO step: attention switched to {attention} on the GPU")
    if not fast:
        from ..orpo_trainer import OrpoDistTrainer

        return OrpoDistTrainer, {}
    from .trainer import FastOrpoTrainer

    return FastOrpoTrainer, fast_step_kwargs(training)


def fast_step_kwargs(training) -> dict:
    """FastOrpoTrainer's own constructor arguments, from the recipe's training fields."""
    return {"chunk_size": training.orpo_chunk_size,
            "keep_budget": training.orpo_logits_budget_mb * 2**20,
            # HF's whole-layer checkpointing already recomputes everything the finer policies would.
            "checkpoint_policy": "none" if training.gradient_checkpointing else training.orpo_activation_checkpointing,
            "completion_only_nll": training.completion_only_nll}

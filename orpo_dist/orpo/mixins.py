"""The trainer's jobs besides ORPO, one behaviour per mixin (put before transformers' Trainer)."""

from __future__ import annotations

from pathlib import Path

from ..run_folder import CHECKPOINT_PREFIX, mark_complete, rotate_complete_checkpoints
from .fast.packing import pair_tokens

LENGTH_SAMPLERS = ("group_by_length", "batch_rebalance")


class CompleteCheckpoints:
    """A COMPLETE marker in each checkpoint once every rank has saved its part, then the rotation of
    older checkpoints: transformers rotates on the main process alone, possibly while another rank
    is still writing (or dying while writing) the new checkpoint. `--resume` trusts marked
    checkpoints only (run_folder.py)."""

    def _save_checkpoint(self, model, trial):
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}-{self.state.global_step}"
            mark_complete(folder, {"world_size": self.accelerator.num_processes,
                                   "per_device_train_batch_size": self.args.per_device_train_batch_size,
                                   "gradient_accumulation_steps": self.args.gradient_accumulation_steps})
            rotate_complete_checkpoints(folder.parent, limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()


class PairLengthColumn:
    """transformers' length-grouped samplers (`train_sampling_strategy: group_by_length` or
    `batch_rebalance`) read a length per row; a pair's is its unique tokens (the shared prefix
    counted once), so pairs of similar cost share a micro-batch and little padding is left."""

    def _add_length_column(self, dataset):
        column = self.args.length_column_name
        if self.args.train_sampling_strategy not in LENGTH_SAMPLERS or dataset is None \
                or column in dataset.column_names:
            return dataset
        lengths = [pair_tokens(c, r) for c, r in zip(dataset["chosen_input_ids"], dataset["rejected_input_ids"])]
        return dataset.add_column(column, lengths)


class NoTrainerModelCard:
    """transformers' push_to_hub writes its own README.md over the run's; orpo-dist writes its card
    (outputs.write_model_card) once the final model is in place, so a README.md in a run folder
    means the run finished."""

    def create_model_card(self, *args, **kwargs) -> None:
        return None

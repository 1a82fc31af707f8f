"""The trainer's jobs besides ORPO, one behaviour per mixin (put before transformers' Trainer)."""

from __future__ import annotations

from pathlib import Path

from ..run_folder import CHECKPOINT_PREFIX, mark_complete, rotate_complete_checkpoints
from ..data.tokenize import pair_tokens

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


class WholeFinalModel:
    """The final model saved whole (an HF folder that from_pretrained loads), whatever the engine
    shards: transformers' save_model writes nothing at all for FSDP's sharded state dict (the
    type its checkpoints use, so they reshard on resume). For the final save the shards are
    gathered into one full state dict (a collective; the main process writes it), as ZeRO-3's
    final save does with stage3_gather_16bit_weights_on_model_save."""

    def save_model(self, output_dir=None, _internal_call=False):
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None) if self.is_fsdp_enabled else None
        if plugin is None or "FULL_STATE_DICT" in str(plugin.state_dict_type):
            return super().save_model(output_dir, _internal_call)
        self._drop_tied_copies = True
        kept = (plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config)
        plugin.state_dict_config = plugin.optim_state_dict_config = None  # filled for the full type
        plugin.set_state_dict_type("FULL_STATE_DICT")
        try:
            return super().save_model(output_dir, _internal_call)
        finally:
            plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config = kept
            self._drop_tied_copies = False

    def _save(self, output_dir=None, state_dict=None):
        """The gathered state dict holds a tied parameter (embeddings = head) under each of its
        names as separate tensors, which transformers no longer recognises as one: keep it once,
        under the name the model's own save would use."""
        if state_dict is not None and getattr(self, "_drop_tied_copies", False):
            first = {}
            for name, param in self.accelerator.unwrap_model(self.model).named_parameters(remove_duplicate=False):
                first.setdefault(id(param), name)
                if first[id(param)] != name:
                    state_dict.pop(name, None)
        return super()._save(output_dir, state_dict)

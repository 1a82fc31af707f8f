"""OrpoDistTrainer: TRL's ORPOTrainer, plus TRL 0.x's max_prompt_length.

TRL 1.16 removed max_prompt_length and cuts a long row in its answers only, so a row whose prompt
fills max_length has nothing left to learn (the data layer drops it). Recipes written for TRL 0.x
and the tutorials users follow set max_prompt_length; with it, a row that does not fit keeps its
prompt's last tokens and trains (the rule: orpo_dist/data/truncation.py, which the data layer's
length checks use as well). Without it, every row is tokenized exactly as TRL's own trainer does.

It also gives transformers' length-grouped samplers (`train_sampling_strategy: group_by_length`
or `batch_rebalance`) the per-row length they need and ORPO rows lack: a pair's unique tokens.

The training step itself is TRL's; faster steps subclass this class.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl.experimental.orpo import ORPOTrainer  # noqa: E402

from .data.truncation import truncate_row  # noqa: E402
from .orpo_step.packing import pair_tokens  # noqa: E402
from .run_folder import CHECKPOINT_PREFIX, mark_complete, rotate_complete_checkpoints  # noqa: E402

LENGTH_SAMPLERS = ("group_by_length", "batch_rebalance")


class OrpoDistTrainer(ORPOTrainer):
    def __init__(self, model=None, args=None, *more, **kwargs):
        # ORPOTrainer tokenizes the datasets inside its __init__, before Trainer sets self.args.
        self.max_prompt_length = getattr(args, "max_prompt_length", None)
        super().__init__(model, args, *more, **kwargs)
        self._add_length_column()

    def _add_length_column(self):
        """Each pair's cost with its shared prefix counted once, so that similar pairs share a
        micro-batch and little padding is left (without it the samplers stop: no input_ids key)."""
        column, data = self.args.length_column_name, self.train_dataset
        if self.args.train_sampling_strategy in LENGTH_SAMPLERS and data is not None \
                and column not in data.column_names:
            lengths = [pair_tokens(c, r) for c, r in zip(data["chosen_input_ids"], data["rejected_input_ids"])]
            self.train_dataset = data.add_column(column, lengths)

    def _save_checkpoint(self, model, trial):
        """transformers' save, then a COMPLETE marker once every rank is done, then the rotation of
        older checkpoints, which transformers would do on the main process alone, possibly while
        another rank is still writing (or dying while writing) the new checkpoint."""
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

    def create_model_card(self, *args, **kwargs) -> None:
        """TRL writes its card into the run folder at every checkpoint, before any model is there;
        orpo-dist writes its own (outputs.write_model_card) once the final model is in place, so a
        README.md in a run folder means the run finished."""

    def tokenize_row(self, feature, model=None) -> dict:
        if self.max_prompt_length is None or self.is_encoder_decoder:
            return super().tokenize_row(feature, model)
        # TRL's tokens (BOS/EOS, merged boundary tokens) with nothing cut, then the cut rule.
        max_length, self.max_length = self.max_length, sys.maxsize
        try:
            row = super().tokenize_row(feature, model)
        finally:
            self.max_length = max_length
        return truncate_row(row, max_length, self.max_prompt_length, self.processing_class.bos_token_id)


def row_tokenizer(tokenizer, max_length: int, max_prompt_length: int | None = None):
    """`feature -> tokenized row`, exactly as OrpoDistTrainer tokenizes training rows (TRL's
    tokenize_row and build_tokenized_answer, then the max_prompt_length rule), without building a
    trainer: evaluation scores the very sequences the loss saw."""
    from accelerate import PartialState

    PartialState()  # TRL's tokenize_row warns through accelerate's logger, which needs the state
    rows = OrpoDistTrainer.__new__(OrpoDistTrainer)  # only the attributes tokenize_row reads
    rows.processing_class, rows.max_length, rows.max_prompt_length = tokenizer, max_length, max_prompt_length
    rows.is_encoder_decoder, rows.label_pad_token_id = False, -100
    return rows.tokenize_row

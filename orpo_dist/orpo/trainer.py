"""OrpoTrainer: ORPO on transformers' Trainer, owned by orpo-dist.

    trainer = OrpoTrainer(model=model, args=OrpoConfig(...), train_dataset=pairs,
                          processing_class=tokenizer, peft_config=LoraConfig(...))
    trainer.train()

The constructor takes TRL's ORPOTrainer's arguments and gives the same results on the same
batches (tests/test_orpo_vs_trl.py; TRL's own test file runs against it too). The parts: the
model's set-up (model_setup.py), the datasets' tokenization (datasets.py, over the data layer's
tokenize.py), the collator (collator.py), one of two forwards chosen by `orpo_step` (select.py:
the padded one, forward.py, or the fast one, fast/), the loss and its figures (loss.py), and the
checkpoint marker, length column and model card as mixins (mixins.py). What is left here is what
ties them to the Trainer: compute_loss, prediction_step and the logging of the figures.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
from transformers import AutoTokenizer, Trainer

from ..data.tokenize import TOKEN_COLUMNS
from . import model_setup
from .collator import PairCollator
from .config import OrpoConfig
from .datasets import tokenize_dataset
from .forward import causal_lm
from .loss import BATCH_METRICS, PAIR_METRICS, orpo_terms
from .mixins import CompleteCheckpoints, NoTrainerModelCard, PairLengthColumn, WholeFinalModel
from .select import choose_forward

MODEL_TAGS = ["orpo", "trl", "orpo-dist"]  # trl: the ORPO recipe and parser conventions the card follows


class OrpoTrainer(CompleteCheckpoints, WholeFinalModel, PairLengthColumn, NoTrainerModelCard, Trainer):
    # compute_loss returns the micro-batch's mean loss; the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: OrpoConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, model_init=None, callbacks=None,
                 optimizers=(None, None), preprocess_logits_for_metrics=None, peft_config=None,
                 compute_metrics=None, forward=None, notice=print):
        if args is None:
            raise ValueError("OrpoTrainer needs args (an OrpoConfig)")
        if train_dataset is None:
            raise ValueError("OrpoTrainer needs a train_dataset")
        if model is None:
            raise ValueError("OrpoTrainer needs a model (a PreTrainedModel or a model name); model_init alone is "
                             "not supported")
        from transformers import set_seed

        set_seed(args.seed)  # LoRA's initial weights are random: the same ones on every rank and rerun
        if isinstance(model, str):
            model = model_setup.load_named_model(model, args)
        model_setup.check_decoder_only(model)
        model = model_setup.with_adapter(model, peft_config, args)
        self._autocast_kbit = model_setup.cast_for_bf16_kbit(model, args)
        if args.disable_dropout:
            model_setup.disable_dropout(model)
        if processing_class is None:
            processing_class = AutoTokenizer.from_pretrained(model.config._name_or_path,
                                                             trust_remote_code=args.trust_remote_code)
        pad = args.padding_value if args.padding_value is not None else processing_class.pad_token_id
        self.forward = forward or choose_forward(args, causal_lm(model), pad, log=notice)
        self.beta = args.beta
        self.aux_loss_coef = getattr(model.config, "router_aux_loss_coef", 0.0)
        self._stored = defaultdict(lambda: defaultdict(list))

        with args.main_process_first(desc="tokenizing the preference pairs"):
            train_dataset = tokenize_dataset(train_dataset, processing_class, args, "training")
            if eval_dataset is not None:
                eval_dataset = tokenize_dataset(eval_dataset, processing_class, args, "eval")
        super().__init__(
            model=model, args=args, data_collator=data_collator or PairCollator(pad),
            train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processing_class,
            model_init=model_init, compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        self.train_dataset = self._add_length_column(self.train_dataset)
        self.forward.prepare(causal_lm(self.accelerator.unwrap_model(self.model)))
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(MODEL_TAGS)

    def _set_signature_columns_if_needed(self):
        # The collator takes the token columns (and the samplers the length), not the model's arguments.
        if self._signature_columns is None:
            self._signature_columns = [*TOKEN_COLUMNS, self.args.length_column_name]

    def policy_output(self, model, batch):
        """The forward's PolicyOutput for one collated batch (tests compare it with TRL's)."""
        return self.forward(model, causal_lm(self.accelerator.unwrap_model(model)), batch)

    def loss_and_metrics(self, model, batch, train_eval: str = "train"):
        """(loss, {name: value}) of one micro-batch; the figures are averaged over every rank."""
        terms = orpo_terms(self.policy_output(model, batch), self.beta, self.aux_loss_coef)
        pairs = self.accelerator.gather_for_metrics(terms.pair_values).mean(0)
        batch_values = self.accelerator.gather_for_metrics(terms.batch_values[None]).mean(0)
        prefix = "eval_" if train_eval == "eval" else ""
        values = dict(zip(PAIR_METRICS + BATCH_METRICS, pairs.tolist() + batch_values.tolist()))
        return terms.loss, {prefix + name: value for name, value in values.items()}

    def _precision(self):
        return torch.autocast(self.accelerator.device.type) if self._autocast_kbit else contextlib.nullcontext()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with self._precision():
            loss, metrics = self.loss_and_metrics(model, inputs, "train")
        self._store(metrics, "train")
        loss = loss.to(self.args.device)
        return (loss, metrics) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self._precision():
            loss, metrics = self.loss_and_metrics(model, inputs, "eval")
        self._store(metrics, "eval")
        if prediction_loss_only:
            return loss.detach(), None, None
        # compute_metrics gets the mean logits as predictions, as TRL hands them over.
        keys = [k for k in ("eval_logits/chosen", "eval_logits/rejected") if k not in (ignore_keys or [])]
        logits = torch.tensor([metrics[k] for k in keys], device=self.accelerator.device)
        return loss.detach(), logits, torch.zeros(logits.shape[0], device=self.accelerator.device)

    def _store(self, metrics: dict, train_eval: str) -> None:
        for key, value in metrics.items():
            self._stored[train_eval][key].append(value)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """Each logged step carries the mean of the figures of the micro-batches since the last one."""
        train_eval = "train" if "loss" in logs else "eval"
        for key, values in self._stored.pop(train_eval, {}).items():
            logs[key] = sum(values) / len(values)
        return super().log(logs, start_time)

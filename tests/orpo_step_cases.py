"""Shared set-up for the step equality tests: orpo-dist's trainer with either forward, and TRL's
experimental ORPOTrainer (the reference, imported by tests only), on the same model and rows, and
one helper that runs any of them on the same collated batch."""

from __future__ import annotations

import copy
import dataclasses

import torch

LONG_PROMPT = "Tell me about the history of the city. " * 16  # 160 tokens

# Rows of very different lengths, a prompt that fills most of max_length (its answers get cut),
# answers sharing a long opening, a short pair.
PAIRS = [
    {"prompt": "What is 2 + 2?", "chosen": " 4.", "rejected": " 5, I think, but maybe 22."},
    {"prompt": "Name a colour.", "chosen": " Blue is a colour that many people like a lot.", "rejected": " No."},
    {"prompt": LONG_PROMPT, "chosen": " It was founded long ago by settlers.", "rejected": " I do not know."},
    {"prompt": "Write a sentence about cats.",
     "chosen": " Cats are small, furry and independent animals that sleep most of the day.",
     "rejected": " Cats are small, furry and independent animals that bark at the postman."},
]
# Every figure both trainers log, in TRL's names; logits/* are compared apart (TRL's average covers padding).
SAME_METRICS = ("nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected",
                "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def orpo_args(tmp_path, **overrides):
    from orpo_dist.orpo import OrpoConfig

    values = dict(output_dir=str(tmp_path), bf16=False, use_cpu=True, max_length=192, beta=0.2,
                  report_to="none", per_device_train_batch_size=len(PAIRS), disable_dropout=True,
                  gradient_checkpointing=False)
    values.update(overrides)
    return OrpoConfig(**values)


def trl_args(args):
    """TRL's ORPOConfig with the same values as `args` (an OrpoConfig) for every field TRL has."""
    from trl.experimental.orpo import ORPOConfig

    names = {f.name for f in dataclasses.fields(ORPOConfig) if f.init}
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and f.name in names}
    values["report_to"] = "none"
    values.pop("logging_dir", None)
    return ORPOConfig(**values)


def make_trainers(model, tokenizer, args, rows=PAIRS, peft_config=None, **fast_kwargs):
    """(stock, fast): orpo-dist's trainer with each forward, over deep copies of one model.
    fast_kwargs go to the fast forward (one technique at a time: share_prefix, pack_rows, ...)."""
    from datasets import Dataset

    from orpo_dist.orpo import OrpoTrainer
    from orpo_dist.orpo.fast.forward import FastForward
    from orpo_dist.orpo.forward import PaddedForward

    data = Dataset.from_list(rows)
    pad = tokenizer.pad_token_id
    stock = OrpoTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer,
                        peft_config=peft_config, forward=PaddedForward(pad, args.completion_only_nll))
    fast = OrpoTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer,
                       peft_config=peft_config,
                       forward=FastForward(pad, **{"completion_only_nll": args.completion_only_nll, **fast_kwargs}))
    return stock, fast


def trl_trainer(model, tokenizer, args, rows=PAIRS, peft_config=None):
    """TRL's experimental ORPOTrainer on a deep copy of the model: the reference."""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer(model=copy.deepcopy(model), args=trl_args(args), train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, peft_config=peft_config)


def collated(trainer, n=None, padding_side="right"):
    from orpo_dist.orpo.collator import PairCollator

    rows = [trainer.train_dataset[i] for i in range(n or len(trainer.train_dataset))]
    return PairCollator(trainer.processing_class.pad_token_id, padding_side)(rows)


def is_trl(trainer) -> bool:
    return type(trainer).__module__.startswith("trl.")


def run_step(trainer, batch):
    """Forward + backward on one batch: (loss, metrics, per-pair logps, grads by parameter name)."""
    model = trainer.model
    model.zero_grad(set_to_none=True)
    if is_trl(trainer):
        chosen, rejected, *_ = trainer.concatenated_forward(model, batch)
        loss, metrics = trainer.get_batch_loss_metrics(model, batch)
    else:
        chosen, rejected, *_ = trainer.policy_output(model, batch)
        loss, metrics = trainer.loss_and_metrics(model, batch)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), metrics, chosen.detach(), rejected.detach(), grads


def assert_same_step(reference, other, batch, atol=1e-5, grad_rtol=1e-4, logits_too=False):
    """`other` gives `reference`'s log-probs, loss, figures and gradients on `batch`. logits/*
    too when `logits_too` (two orpo-dist forwards, or a batch without padding)."""
    r_loss, r_metrics, r_chosen, r_rejected, r_grads = run_step(reference, batch)
    o_loss, o_metrics, o_chosen, o_rejected, o_grads = run_step(other, batch)
    torch.testing.assert_close(o_chosen, r_chosen, atol=atol, rtol=0)
    torch.testing.assert_close(o_rejected, r_rejected, atol=atol, rtol=0)
    torch.testing.assert_close(o_loss, r_loss, atol=atol, rtol=0)
    keys = SAME_METRICS + (("logits/chosen", "logits/rejected") if logits_too else ())
    for key in keys:
        assert abs(o_metrics[key] - r_metrics[key]) <= atol, (key, o_metrics[key], r_metrics[key])
    assert set(o_metrics) == set(r_metrics)
    assert o_grads.keys() == r_grads.keys() and r_grads
    for name, g in r_grads.items():
        scale = g.abs().max().item()
        err = (o_grads[name] - g).abs().max().item()
        assert err <= grad_rtol * max(scale, 1e-6), (name, err, scale)
    return r_loss.item()


def real_position_logits(model, batch) -> tuple[float, float]:
    """(chosen, rejected) mean logit over the positions that predict a next token: the figure
    orpo-dist logs as logits/*, computed from one plain forward per side."""
    out = []
    with torch.no_grad():
        for side in ("chosen", "rejected"):
            mask = batch[f"{side}_attention_mask"]
            logits = model(input_ids=batch[f"{side}_input_ids"], attention_mask=mask).logits[:, :-1]
            keep = (mask[:, 1:] == 1) & (mask[:, :-1] == 1)
            out.append((logits.mean(-1) * keep).sum().item() / keep.sum().item())
    return out[0], out[1]

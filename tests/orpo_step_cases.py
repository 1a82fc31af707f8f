"""Shared set-up for the fast-step equivalence tests: one stock and one fast trainer on the same
model and rows, and a helper that runs both on the same collated batch."""

from __future__ import annotations

import copy

import torch

LONG_PROMPT = "Tell me about the history of the city. " * 16  # 160 tokens

# Rows of very different lengths, a prompt that fills most of max_length (TRL truncates the
# answers), answers sharing a long opening, an empty-looking short pair.
PAIRS = [
    {"prompt": "What is 2 + 2?", "chosen": " 4.", "rejected": " 5, I think, but maybe 22."},
    {"prompt": "Name a colour.", "chosen": " Blue is a colour that many people like a lot.", "rejected": " No."},
    {"prompt": LONG_PROMPT, "chosen": " It was founded long ago by settlers.", "rejected": " I do not know."},
    {"prompt": "Write a sentence about cats.",
     "chosen": " Cats are small, furry and independent animals that sleep most of the day.",
     "rejected": " Cats are small, furry and independent animals that bark at the postman."},
]


def orpo_args(tmp_path, **overrides):
    from trl.experimental.orpo import ORPOConfig

    values = dict(output_dir=str(tmp_path), bf16=False, use_cpu=True, max_length=192, beta=0.2,
                  report_to="none", per_device_train_batch_size=len(PAIRS), disable_dropout=True)
    values.update(overrides)
    return ORPOConfig(**values)


def make_trainers(model, tokenizer, args, rows=PAIRS, peft_config=None, **fast_kwargs):
    """(stock, fast) trainers over deep copies of one model, with the same tokenized rows."""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOTrainer

    from orpo_dist.orpo_step.trainer import FastOrpoTrainer

    data = Dataset.from_list(rows)
    stock = ORPOTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer,
                        peft_config=peft_config)
    fast = FastOrpoTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer,
                           peft_config=peft_config, **fast_kwargs)
    return stock, fast


def collated(trainer, n=None):
    rows = [trainer.train_dataset[i] for i in range(n or len(trainer.train_dataset))]
    return trainer.data_collator(rows)


def run_step(trainer, batch):
    """Forward + backward on one batch: (loss, metrics, per-pair logps, grads by parameter name)."""
    model = trainer.model
    model.zero_grad(set_to_none=True)
    chosen, rejected, *_ = trainer.concatenated_forward(model, batch)
    loss, metrics = trainer.get_batch_loss_metrics(model, batch)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), metrics, chosen.detach(), rejected.detach(), grads


def assert_same_step(stock, fast, batch, atol=1e-5, grad_rtol=1e-4):
    s_loss, s_metrics, s_chosen, s_rejected, s_grads = run_step(stock, batch)
    f_loss, f_metrics, f_chosen, f_rejected, f_grads = run_step(fast, batch)
    torch.testing.assert_close(f_chosen, s_chosen, atol=atol, rtol=0)
    torch.testing.assert_close(f_rejected, s_rejected, atol=atol, rtol=0)
    torch.testing.assert_close(f_loss, s_loss, atol=atol, rtol=0)
    for key in ("nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected",
                "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert abs(f_metrics[key] - s_metrics[key]) <= atol, (key, f_metrics[key], s_metrics[key])
    assert set(f_metrics) == set(s_metrics)
    assert f_grads.keys() == s_grads.keys() and s_grads
    for name, g in s_grads.items():
        scale = g.abs().max().item()
        err = (f_grads[name] - g).abs().max().item()
        assert err <= grad_rtol * max(scale, 1e-6), (name, err, scale)
    return s_loss.item()

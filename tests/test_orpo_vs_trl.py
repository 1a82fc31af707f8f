"""orpo-dist's ORPO trainer against TRL's experimental ORPOTrainer, the reference.

On the same rows and batches, with either of orpo-dist's forwards: the same tokens, the same loss,
every logged figure and every gradient to 1e-5 (fp32; gradients to 1e-4 of their largest entry),
for standard and conversational data, a prompt that leaves its answers little room, a pair whose
chosen equals its rejected, LoRA, and whole runs with gradient accumulation and evaluation. And
the two places where TRL's step is wrong and orpo-dist's is not: a batch padded on the left, and a
pair whose prompt fills max_length. (DDP and ZeRO-3: tests/test_distributed.py.)
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from orpo_dist.errors import UserError

from .orpo_step_cases import (
    LONG_PROMPT, PAIRS, assert_same_step, collated, make_trainers, orpo_args, real_position_logits, run_step,
    trl_trainer,
)

CONVERSATIONAL = [{"prompt": [{"role": "user", "content": p["prompt"][:200]}],
                   "chosen": [{"role": "assistant", "content": p["chosen"]}],
                   "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in PAIRS]
SAME_ANSWERS = [{"prompt": "Say yes.", "chosen": " Yes, gladly.", "rejected": " Yes, gladly."}]
CASES = {
    "standard": dict(rows=PAIRS),
    "conversational": dict(rows=CONVERSATIONAL),
    "answers cut by max_length": dict(rows=PAIRS, max_length=150),
    "chosen equals rejected": dict(rows=PAIRS[:2] + SAME_ANSWERS),
}


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():  # a random model gives every answer about the same odds: make them differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _trainers(model, tokenizer, tmp_path, rows, peft_config=None, **config):
    args = orpo_args(tmp_path, per_device_train_batch_size=len(rows), **config)
    stock, fast = make_trainers(model, tokenizer, args, rows=rows, peft_config=peft_config)
    return trl_trainer(model, tokenizer, args, rows=rows, peft_config=peft_config), stock, fast


@pytest.mark.parametrize("case", CASES)
def test_tokens_loss_figures_and_gradients_equal_trls(tiny_model, demo_tokenizer, tmp_path, case):
    rows, config = CASES[case]["rows"], {k: v for k, v in CASES[case].items() if k != "rows"}
    trl, stock, fast = _trainers(tiny_model, demo_tokenizer, tmp_path, rows, **config)
    columns = [c for c in stock.train_dataset.column_names if c != "length"]
    assert stock.train_dataset.to_dict() == trl.train_dataset.select_columns(columns).to_dict()
    if case == "answers cut by max_length":
        assert len(stock.train_dataset[2]["chosen_input_ids"]) == 150
    batch = collated(stock)
    for ours in (stock, fast):
        assert_same_step(trl, ours, batch)
    # logits/*: the mean over the positions that predict a token (TRL's also averages padding).
    _, metrics, *_ = run_step(stock, batch)
    want = real_position_logits(stock.model, batch)
    assert metrics["logits/chosen"] == pytest.approx(want[0], abs=1e-6)
    assert metrics["logits/rejected"] == pytest.approx(want[1], abs=1e-6)


def test_a_batch_without_padding_gives_trls_logits_figures_too(tiny_model, demo_tokenizer, tmp_path):
    trl, stock, fast = _trainers(tiny_model, demo_tokenizer, tmp_path, SAME_ANSWERS)
    batch = collated(stock)  # one pair, both sides the same length: no padding anywhere
    assert batch["chosen_attention_mask"].all() and batch["rejected_attention_mask"].all()
    for ours in (stock, fast):
        assert_same_step(trl, ours, batch, logits_too=True)


def test_lora_equals_trls(tiny_model, demo_tokenizer, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    trl, stock, fast = _trainers(tiny_model, demo_tokenizer, tmp_path, PAIRS, peft_config=lora)
    for trainer in (trl, stock, fast):  # LoRA's B starts at 0, leaving A without gradient
        torch.manual_seed(1)
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.02)
    for ours in (stock, fast):
        assert_same_step(trl, ours, collated(stock))


LOGGED = ("loss", "grad_norm", "nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen",
          "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def test_runs_with_gradient_accumulation_and_eval_log_what_trl_logs(tiny_model, demo_tokenizer, tmp_path):
    """Two optimizer steps of 2 micro-batches of 2 pairs, then an evaluation: the same log, the
    same eval figures and the same weights as TRL's trainer. (Plain SGD: Adam's normalised
    update would turn a 1e-7 difference in a near-zero gradient into a visible one.)"""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOTrainer

    from orpo_dist.orpo import OrpoTrainer

    from .orpo_step_cases import trl_args

    rows, held_out = PAIRS + PAIRS[::-1], PAIRS[:2] + SAME_ANSWERS
    run = dict(per_device_train_batch_size=2, per_device_eval_batch_size=2, gradient_accumulation_steps=2,
               max_steps=2, logging_steps=1, learning_rate=0.1, optim="sgd", lr_scheduler_type="constant", save_strategy="no",
               eval_strategy="no", seed=3)
    logs = {}
    for name in ("trl", "stock", "fast"):
        args = orpo_args(tmp_path / name, orpo_step="stock" if name == "trl" else name, **run)
        data = dict(train_dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(held_out))
        if name == "trl":
            trainer = ORPOTrainer(model=copy.deepcopy(tiny_model), args=trl_args(args), processing_class=demo_tokenizer,
                                  **data)
        else:
            trainer = OrpoTrainer(model=copy.deepcopy(tiny_model), args=args, processing_class=demo_tokenizer, **data)
            assert trainer.forward.name == name
        trainer.train()
        evaluation = trainer.evaluate()
        steps = [r for r in trainer.state.log_history if "loss" in r]
        logs[name] = (steps, evaluation, {n: p.detach().clone() for n, p in trainer.model.named_parameters()})
    want_steps, want_eval, want_params = logs["trl"]
    assert len(want_steps) == 2
    for name in ("stock", "fast"):
        steps, evaluation, params = logs[name]
        for got, want in zip(steps, want_steps, strict=True):
            for key in LOGGED:
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (name, got["step"], key)
        for key in ("eval_loss", *(f"eval_{k}" for k in LOGGED if k not in ("loss", "grad_norm"))):
            assert evaluation[key] == pytest.approx(want_eval[key], rel=1e-5, abs=1e-6), (name, key)
        for n, p in want_params.items():
            torch.testing.assert_close(params[n], p, atol=1e-6, rtol=1e-5)
        assert any(not torch.equal(params[n], tiny_model.get_parameter(n)) for n in params)  # it trained


def test_padding_side_changes_nothing_in_orpo_dist_and_trls_nll_in_trl(tiny_model, demo_tokenizer, tmp_path):
    """Left padding: orpo-dist's forwards give what right padding gives. TRL's stock step also
    predicts each row's first real token from the padding before it: more NLL targets, another loss."""
    trl, stock, fast = _trainers(tiny_model, demo_tokenizer, tmp_path, PAIRS)
    right, left = collated(stock), collated(stock, padding_side="left")
    assert not torch.equal(right["chosen_input_ids"], left["chosen_input_ids"])
    for ours in (stock, fast):
        r_loss, r_metrics, *_, r_grads = run_step(ours, right)
        l_loss, l_metrics, *_, l_grads = run_step(ours, left)
        assert abs(l_loss.item() - r_loss.item()) <= 1e-5
        assert all(abs(l_metrics[k] - r_metrics[k]) <= 1e-5 for k in r_metrics)
        assert all(torch.allclose(l_grads[n], g, atol=1e-6, rtol=1e-4) for n, g in r_grads.items())
    trl_right, *_ = run_step(trl, right)
    trl_left, *_ = run_step(trl, left)
    assert abs(trl_right.item() - r_loss.item()) <= 1e-5
    assert abs(trl_left.item() - trl_right.item()) > 1e-4, "TRL's step no longer depends on the padding side"


def test_a_prompt_that_fills_max_length_never_reaches_the_loss(tiny_model, demo_tokenizer, tmp_path):
    """TRL trains such a pair on an empty answer: a NaN loss. orpo-dist refuses the row (naming it
    and the fix), or with max_prompt_length keeps the prompt's end and trains it."""
    rows = PAIRS[:2] + [{"prompt": LONG_PROMPT, "chosen": " Founded long ago.", "rejected": " No idea."}]
    args = orpo_args(tmp_path, max_length=96, per_device_train_batch_size=3)
    trl = trl_trainer(tiny_model, demo_tokenizer, args, rows=rows)
    trl_loss, *_ = run_step(trl, trl.data_collator([trl.train_dataset[i] for i in range(len(rows))]))
    assert math.isnan(trl_loss.item())

    with pytest.raises(UserError, match=r"1 of the 3 training pairs cannot train: row 2: prompt too long.*"
                                        r"max_prompt_length"):
        make_trainers(tiny_model, demo_tokenizer, args, rows=rows)
    for trainer in make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path, max_length=96, max_prompt_length=64,
                                                                       per_device_train_batch_size=3), rows=rows):
        loss, metrics, chosen, rejected, grads = run_step(trainer, collated(trainer))
        assert math.isfinite(loss.item()) and torch.isfinite(chosen).all() and torch.isfinite(rejected).all()
        assert all(torch.isfinite(g).all() for g in grads.values())

    from orpo_dist.orpo.collator import PairCollator

    empty = dict(trl.train_dataset[2])  # TRL's tokens of that row: an empty answer
    assert all(label == -100 for label in empty["chosen_labels"])
    with pytest.raises(ValueError, match="pair 0 of this batch has an empty answer"):
        PairCollator(demo_tokenizer.pad_token_id)([empty])


def test_config_fields_and_defaults_are_trls():
    """Every field of TRL's ORPOConfig exists in orpo-dist's with TRL's default, bf16 apart (TRL's
    rule fails on a CPU: orpo-dist turns it on where a GPU supports it)."""
    import dataclasses

    from trl.experimental.orpo import ORPOConfig

    from orpo_dist.orpo import OrpoConfig

    def defaults(cls):
        return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls) if f.init}

    ours, trl = defaults(OrpoConfig), defaults(ORPOConfig)
    assert set(trl) <= set(ours)
    differ = {name: (ours[name], value) for name, value in trl.items() if ours[name] != value}
    assert differ == {}, differ
    assert OrpoConfig(output_dir="x", use_cpu=True).bf16 is False

"""orpo-dist's ORPO loss (either forward), checked against the paper's formula computed apart.

Hong et al. 2024: L = L_SFT + beta * L_OR, with L_OR = -log sigmoid(log(odds(y_w) / odds(y_l))),
odds(y) = P(y|x) / (1 - P(y|x)) and P the length-normalised likelihood exp(mean log-prob of the
answer tokens). L_SFT is the token-mean cross entropy over the chosen prompt+answer tokens (TRL's
choice). Here each sequence runs alone (no padding, no batch stacking) in float64.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

PAIRS = [
    ("What is 2 plus 2?", "2 plus 2 is 4.", "2 plus 2 is 5."),
    ("Name a primary colour.", "Red.", "Purple, which is a primary colour in every system."),
    ("Say hi in French.", "Bonjour!", "Hello!"),
    ("Capital of Italy?", "Rome is the capital of Italy.", "Milan."),
]


def _render(tokenizer, prompt, answer):
    p = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False
    )
    return p, full[len(p):]


def _paper_loss(model, batch, beta):
    """ORPO from the formula, one unpadded float64 forward per sequence."""
    nll_sum, nll_tokens, terms = 0.0, 0, []
    for i in range(batch["chosen_input_ids"].shape[0]):
        mean_logp = {}
        for side in ("chosen", "rejected"):
            mask = batch[f"{side}_attention_mask"][i].bool()
            ids = batch[f"{side}_input_ids"][i][mask]
            labels = batch[f"{side}_labels"][i][mask]
            logp = torch.log_softmax(model(ids[None]).logits[0, :-1].double(), -1)
            token_logp = logp.gather(1, ids[1:, None]).squeeze(1)
            answer = labels[1:] != -100
            mean_logp[side] = token_logp[answer].mean()
            if side == "chosen":  # SFT term on the chosen sequence, prompt included (as TRL does)
                nll_sum -= token_logp.sum()
                nll_tokens += token_logp.numel()
        log_odds = {s: v - torch.log1p(-torch.exp(v)) for s, v in mean_logp.items()}
        terms.append(-torch.nn.functional.logsigmoid(log_odds["chosen"] - log_odds["rejected"]))
    nll = nll_sum / nll_tokens
    return nll + beta * torch.stack(terms).mean(), nll


@pytest.mark.parametrize("step", ["stock", "fast"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_loss_equals_paper_formula(tiny_model_dir, demo_tokenizer, tmp_path, beta, step):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from orpo_dist.orpo import OrpoTrainer
    from orpo_dist.recipe import parse

    rows = []
    for prompt, chosen, rejected in PAIRS:
        p, c = _render(demo_tokenizer, prompt, chosen)
        _, r = _render(demo_tokenizer, prompt, rejected)
        rows.append({"prompt": p, "chosen": c, "rejected": r})
    recipe = parse(["--model_name_or_path", str(tiny_model_dir), "--dataset_name", "unused",
                    "--output_dir", str(tmp_path), "--beta", str(beta), "--report_to", "none", "--orpo_step", step])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():  # a random model gives all answers ~equal odds: make them differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    trainer = OrpoTrainer(model=model, args=recipe.training, train_dataset=Dataset.from_list(rows),
                          processing_class=demo_tokenizer)
    assert trainer.forward.name == step
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    model.eval()
    with torch.no_grad():
        loss, metrics = trainer.loss_and_metrics(model, batch)
        reference = copy.deepcopy(model).double()
        ours, nll = _paper_loss(reference, batch, beta)
    assert math.isclose(metrics["nll_loss"], nll.item(), rel_tol=1e-5)
    assert math.isclose(loss.item(), ours.item(), rel_tol=1e-5), (loss.item(), ours.item())
    # The odds-ratio term is really in there: with beta it moves the loss by a visible amount.
    assert abs(ours.item() - nll.item()) > 0.01 * beta

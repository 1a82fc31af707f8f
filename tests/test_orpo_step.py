"""The fast ORPO forward equals the padded (stock) one on the same batch: per-pair log-probs, loss,
every logged figure (to 1e-5, fp32) and the gradient of every trainable parameter (to 1e-4
relative to its largest entry), for each technique alone and all together. (Both against TRL's
own trainer: tests/test_orpo_vs_trl.py.)"""

from __future__ import annotations

import pytest
import torch

from .orpo_step_cases import PAIRS, assert_same_step, collated, make_trainers, orpo_args


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


TECHNIQUES = {
    "all": dict(),
    "chunked head alone": dict(share_prefix=False, pack_rows=False, chunk_size=7),
    "shared prefix alone": dict(pack_rows=False, chunk_size=0),
    "packed rows alone": dict(share_prefix=False, chunk_size=0),
    "all, small chunks": dict(chunk_size=5),
    "all, logits kept": dict(chunk_size=5, keep_budget=2**30),
    "all, logits recomputed": dict(chunk_size=5, keep_budget=0),
    "all, norms and MLP activation recomputed": dict(checkpoint_policy="norms+mlp-act"),
    "all, whole MLP recomputed": dict(checkpoint_policy="mlp"),
}


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_fast_step_equals_stock(tiny_model, demo_tokenizer, tmp_path, technique):
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path), **TECHNIQUES[technique])
    batch = collated(stock)
    assert_same_step(stock, fast, batch, logits_too=True)


def test_long_prompt_is_truncated_like_stock(tiny_model, demo_tokenizer, tmp_path):
    """The long prompt fills most of max_length: its answers are cut; both forwards see the same."""
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path, max_length=150))
    row = stock.train_dataset[2]
    prompt_len = sum(1 for label in row["chosen_labels"] if label == -100)
    assert 140 < prompt_len < 150 and len(row["chosen_input_ids"]) == 150  # answers cut to fit
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_prompt_and_shared_opening_are_computed_once(tiny_model, demo_tokenizer, tmp_path):
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path))
    batch = collated(stock)
    fast.policy_output(fast.model, batch)
    packed = fast.forward.last_packed
    unique = 0
    for i in range(len(PAIRS)):
        c = batch["chosen_input_ids"][i][batch["chosen_attention_mask"][i].bool()].tolist()
        r = batch["rejected_input_ids"][i][batch["rejected_attention_mask"][i].bool()].tolist()
        k = next((j for j, (a, b) in enumerate(zip(c, r)) if a != b), min(len(c), len(r)))
        unique += len(c) + len(r) - k
    assert packed.unique_tokens == unique
    stock_tokens = batch["chosen_input_ids"].numel() + batch["rejected_input_ids"].numel()
    assert packed.input_ids.numel() < stock_tokens
    # the cats pair shares its answers' opening, beyond the prompt
    cats = PAIRS.index(PAIRS[3])
    shared = ((packed.pair_ids == cats) & (packed.segments == 0)).sum().item()
    prompt_len = sum(1 for label in stock.train_dataset[cats]["chosen_labels"] if label == -100)
    assert shared > prompt_len + 5


def test_tokenizer_without_bos(tiny_model, demo_tokenizer, tmp_path):
    import copy

    tokenizer = copy.deepcopy(demo_tokenizer)
    tokenizer.bos_token = None
    assert tokenizer.bos_token_id is None
    stock, fast = make_trainers(tiny_model, tokenizer, orpo_args(tmp_path))
    assert stock.train_dataset[0]["chosen_input_ids"][0] != demo_tokenizer.bos_token_id
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_chat_template_rows(tiny_model, demo_tokenizer, tmp_path):
    from trl.data_utils import apply_chat_template

    rows = [apply_chat_template({"prompt": [{"role": "user", "content": p["prompt"][:200]}],
                                 "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                 "rejected": [{"role": "assistant", "content": p["rejected"]}]}, demo_tokenizer)
            for p in PAIRS]
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path), rows=rows)
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_lora(tiny_model, demo_tokenizer, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path), peft_config=lora)
    # LoRA's B starts at zero, which leaves A without gradient: step both once so both move.
    for trainer in (stock, fast):
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                torch.manual_seed(1)
                p.data.normal_(0, 0.02)
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_lora_on_tied_head(tiny_model, demo_tokenizer, tmp_path):
    """All-linear LoRA: the vocabulary projection itself is wrapped (the tiny llama ties it)."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path), peft_config=lora)
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_qlora(tiny_model_dir, demo_tokenizer, tmp_path):
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                               bnb_4bit_quant_storage=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant, dtype=torch.float32,
                                                 device_map={"": "cpu"})
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    stock, fast = make_trainers(model, demo_tokenizer, orpo_args(tmp_path, gradient_checkpointing=False),
                                peft_config=lora)
    assert any("4bit" in type(m).__name__ for m in fast.model.modules())
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_gradient_checkpointing(tiny_model, demo_tokenizer, tmp_path):
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path, gradient_checkpointing=True))
    for trainer in (stock, fast):
        trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainer.model.train()
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_eager_attention(tiny_model_dir, demo_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="eager")
    stock, fast = make_trainers(model, demo_tokenizer, orpo_args(tmp_path))
    assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_completion_only_nll(tiny_model, demo_tokenizer, tmp_path):
    """Answer-only NLL: the mean NLL over the chosen answers' tokens alone."""
    stock, fast = make_trainers(tiny_model, demo_tokenizer, orpo_args(tmp_path, completion_only_nll=True))
    batch = collated(stock)
    model = stock.model
    out = model(batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"])
    logps = out.logits[:, :-1].float().log_softmax(-1)
    labels = batch["chosen_labels"][:, 1:]
    mask = labels != -100
    token_logps = logps.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    expected = -(token_logps * mask).sum() / mask.sum()
    for trainer in (stock, fast):
        nll = trainer.policy_output(trainer.model, batch).nll
        torch.testing.assert_close(nll, expected, atol=1e-5, rtol=0)
    assert_same_step(stock, fast, batch, logits_too=True)


@pytest.mark.parametrize("keep_budget", [0, 2**20], ids=["recomputed", "kept"])
@pytest.mark.parametrize("frozen", [True, False], ids=["frozen head", "trained head"])
def test_chunked_head_equals_full_logits(frozen, keep_budget):
    from orpo_dist.orpo.fast.head import target_logps

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    head.weight.requires_grad_(not frozen)
    hidden = torch.randn(23, 16, requires_grad=True)
    tokens = torch.randint(0, 50, (23,))
    upstream = torch.randn(23)
    ref, ref_mean = target_logps(head, hidden, tokens, chunk_size=0)
    (ref * upstream).sum().backward()
    ref_grad = hidden.grad.clone()
    ref_wgrad = None if frozen else head.weight.grad.clone()
    hidden.grad = None
    head.weight.grad = None
    got, got_mean = target_logps(head, hidden, tokens, chunk_size=4, keep_budget=keep_budget)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_mean, ref_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(hidden.grad, ref_grad, atol=1e-6, rtol=1e-5)
    if not frozen:
        torch.testing.assert_close(head.weight.grad, ref_wgrad, atol=1e-6, rtol=1e-5)


def test_head_keeps_logits_only_within_the_budget():
    from orpo_dist.orpo.fast.head import keeps_logits

    assert keeps_logits(1000, 50_000, 1000 * 50_000 * 4)
    assert not keeps_logits(1001, 50_000, 1000 * 50_000 * 4)
    assert not keeps_logits(1, 50_000, 0)  # 0: always recompute


def test_kept_logits_skip_the_recompute(monkeypatch):
    """The point of keeping: the head's product runs once per chunk, not twice (forward + recompute)."""
    from orpo_dist.orpo.fast.head import target_logps

    linear, calls = torch.nn.functional.linear, []
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a, **k: calls.append(1) or linear(*a, **k))
    for frozen in (True, False):
        head = torch.nn.Linear(16, 50, bias=False)
        head.weight.requires_grad_(not frozen)
        hidden = torch.randn(12, 16, requires_grad=True)
        tokens = torch.randint(0, 50, (12,))
        counts = {}
        for budget in (0, 2**20):
            calls.clear()
            target_logps(head, hidden, tokens, chunk_size=4, keep_budget=budget)[0].sum().backward()
            counts[budget] = len(calls)
        assert counts == {0: 6, 2**20: 3}, (frozen, counts)


def test_flex_block_mask_gives_the_same_forward(tiny_model_dir, demo_tokenizer, tmp_path):
    """The GPU path's BlockMask is the same mask: FlexAttention's forward (it has no backward on
    the CPU) gives the SDPA path's log-probs on the same packed batch."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    stock, fast = make_trainers(model, demo_tokenizer, orpo_args(tmp_path))
    batch = collated(stock)
    with torch.no_grad():
        want = fast.policy_output(fast.model, batch)
        fast.model.set_attn_implementation("flex_attention")
        got = fast.policy_output(fast.model, batch)
    assert fast.forward.last_packed.input_ids.shape[1] % 128 == 0
    for a, b in zip(got[:5], want[:5]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_rows_are_as_wide_as_packs_cheapest():
    """Rows as wide as the longest block left 23% padding on HH-RLHF; the chosen width packs the
    same blocks with less, and never costs more than the longest-block rule."""
    from orpo_dist.orpo.fast.packing import _first_fit, row_width

    lengths = [411, 300, 250, 238, 190, 180, 150, 120]
    cost = 3.3e-4  # SmolLM2-135M's attention_cost

    def price(width):
        return len(_first_fit(lengths, width)) * width * (1 + cost * width)

    width = row_width(lengths, cost)
    assert width > 411 and price(width) < price(411)
    padding = 1 - sum(lengths) / (len(_first_fit(lengths, width)) * width)
    assert padding < 0.1 < 1 - sum(lengths) / (len(_first_fit(lengths, 411)) * 411)
    assert row_width(lengths, None) == 411  # the old rule, kept for measuring
    # FlexAttention (attention nearly free per width): fewest padded positions, in 128-token blocks.
    flex = row_width(lengths, 0.0, multiple=128)
    assert flex % 128 == 0 and len(_first_fit(lengths, flex)) * flex == 1920  # 1839 tokens -> 15 blocks


def test_checkpoint_policies_wrap_once_and_can_be_undone(tiny_model):
    from orpo_dist.orpo.fast import checkpointing

    decoder = tiny_model.get_decoder()
    layers = len(decoder.layers)
    assert checkpointing.apply(decoder, "norms+mlp-act") == 2 * layers + 1 + layers  # 2 norms a layer + final
    assert checkpointing.apply(decoder, "norms+mlp-act") == 3 * layers + 1  # again: replaced, not stacked
    assert checkpointing.apply(decoder, "none") == 0
    assert all("forward" not in m.__dict__ for m in decoder.modules())

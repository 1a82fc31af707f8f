"""The fast ORPO step on every architecture family of orpo_dist/architectures.py equals the stock
step on the same batch (per-pair log-probs, loss, figures to 1e-5; every gradient to 1e-4 of its
largest entry; fp32), with what makes each family differ switched on and made to matter: sliding
windows shorter than the rows, soft-capping after the head, fused projections, experts (dense and
sparse layers), and the fast step's own activation checkpointing of each MLP form.

One tiny config per model type (2 layers, hidden 64, the demo tokenizer's vocabulary). Adding a
family to architectures.py takes its configs here."""

from __future__ import annotations

import pytest
import torch

from orpo_dist.architectures import ARCHITECTURES, FAMILIES, Family, family_of
from orpo_dist.errors import UserError

from .helpers import TINY_LLAMA_SHAPE
from .orpo_step_cases import assert_same_step, collated, make_trainers, orpo_args

WINDOW = 8  # tokens: far shorter than the test rows (up to 192), so every sliding layer is cut by it
SHAPE = dict(TINY_LLAMA_SHAPE, head_dim=16, max_position_embeddings=512)
ONE_OF_EACH = ["sliding_attention", "full_attention"]
EXPERTS = dict(num_experts_per_tok=2, moe_intermediate_size=64)

# model type -> (config fields beyond SHAPE, attention implementation)
CONFIGS = {
    "llama": ({}, "sdpa"),
    "mistral": (dict(sliding_window=WINDOW), "sdpa"),
    "gemma": ({}, "sdpa"),
    "qwen2": (dict(use_sliding_window=True, sliding_window=WINDOW, layer_types=ONE_OF_EACH), "sdpa"),
    "qwen3": (dict(use_sliding_window=True, sliding_window=WINDOW, layer_types=ONE_OF_EACH), "sdpa"),
    "ministral": (dict(sliding_window=WINDOW, layer_types=ONE_OF_EACH), "sdpa"),
    "smollm3": (dict(use_sliding_window=True, sliding_window=WINDOW, layer_types=ONE_OF_EACH), "sdpa"),
    "gemma2": (dict(sliding_window=WINDOW, layer_types=ONE_OF_EACH, final_logit_softcapping=2.0), "eager"),
    "gemma3_text": (dict(sliding_window=WINDOW, layer_types=ONE_OF_EACH, final_logit_softcapping=2.0), "eager"),
    "phi3": (dict(sliding_window=WINDOW), "sdpa"),
    "mixtral": (dict(sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2), "sdpa"),
    "qwen3_moe": (dict(EXPERTS, num_experts=4, mlp_only_layers=[1], use_sliding_window=True,
                       sliding_window=WINDOW), "sdpa"),
    "qwen2_moe": (dict(EXPERTS, num_experts=4, shared_expert_intermediate_size=64, mlp_only_layers=[1],
                       use_sliding_window=True, sliding_window=WINDOW, layer_types=ONE_OF_EACH), "sdpa"),
}


def test_every_family_has_its_configs():
    assert set(CONFIGS) == set(ARCHITECTURES)


def tiny_model(model_type: str, tokenizer, **changes):
    from transformers import AutoConfig, AutoModelForCausalLM

    fields, attention = CONFIGS[model_type]
    config = AutoConfig.for_model(model_type, **{**SHAPE, **fields, **changes}, vocab_size=len(tokenizer),
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)


def policy_for(model_type: str) -> str:
    # Each MLP form's activation-only wrapper where it has one; a mixture of experts recomputes whole.
    return "norms+mlp" if family_of(model_type).mlp == "moe" else "norms+mlp-act"


@pytest.mark.parametrize("model_type", CONFIGS)
def test_fast_step_equals_stock(model_type, demo_tokenizer, tmp_path):
    from orpo_dist.orpo.select import unsupported_reason

    model = tiny_model(model_type, demo_tokenizer)
    assert unsupported_reason(model.config) is None
    stock, fast = make_trainers(model, demo_tokenizer, orpo_args(tmp_path), checkpoint_policy=policy_for(model_type))
    batch = collated(stock)
    assert_same_step(stock, fast, batch, logits_too=True)
    fields = CONFIGS[model_type][0]
    if "sliding_window" in fields or "final_logit_softcapping" in fields:
        # What the family handles changes the log-probs here, by far more than the tolerance above:
        # the equality is not one of models on which the window or the cap does nothing.
        plain = tiny_model(model_type, demo_tokenizer, sliding_window=SHAPE["max_position_embeddings"],
                           final_logit_softcapping=None)  # a window no row reaches
        stock_plain, _ = make_trainers(plain, demo_tokenizer, orpo_args(tmp_path))
        with torch.no_grad():
            with_it, without = (t.policy_output(t.model, batch) for t in (stock, stock_plain))
        moved = max((with_it.chosen_logps - without.chosen_logps).abs().max().item(),
                    (with_it.rejected_logps - without.rejected_logps).abs().max().item())
        print(f"{model_type}: the window/cap moves a pair's mean log-prob by {moved:.2e}")
        assert moved > 1e-3, moved


def test_checkpointing_wraps_every_layers_mlp_of_each_form(demo_tokenizer):
    from orpo_dist.orpo.fast import checkpointing

    for model_type in ("llama", "phi3", "qwen3_moe"):
        decoder = tiny_model(model_type, demo_tokenizer).get_decoder()
        forms = {checkpointing.mlp_form(layer.mlp) for layer in decoder.layers}
        assert None not in forms, (model_type, forms)
        assert checkpointing.apply(decoder, "mlp") == len(decoder.layers)
    assert forms == {"moe", "gated"}  # qwen3_moe: a sparse layer and a dense one (mlp_only_layers)
    with pytest.raises(UserError, match=r"layers\.0\.mlp \(Qwen3MoeSparseMoeBlock\) has no activation"):
        checkpointing.apply(decoder, "mlp-act")


def test_a_layer_of_unknown_form_is_named_not_skipped(demo_tokenizer):
    from orpo_dist.orpo.fast import checkpointing

    decoder = tiny_model("llama", demo_tokenizer).get_decoder()
    decoder.layers[1].mlp = torch.nn.Identity()
    with pytest.raises(UserError, match=r"layers\.1\.mlp \(Identity\) has no activation"):
        checkpointing.apply(decoder, "norms+mlp-act")
    del decoder.layers[1].mlp
    with pytest.raises(UserError, match=r"found no `mlp` module in layers\.1"):
        checkpointing.apply(decoder, "mlp")


def test_what_a_family_does_not_handle_keeps_the_stock_step():
    from transformers import AutoConfig

    from orpo_dist.orpo.select import unsupported_reason

    cases = {
        "llama": (dict(logit_scale=0.5), "logit_scale=0.5, applied after the head"),
        "granite": (dict(logits_scaling=4.0), "architecture 'granite' is not one of"),
        "gemma2": (dict(num_hidden_layers=2, layer_types=["chunked_attention", "full_attention"]),
                   "layer types chunked_attention"),
        "mixtral": (dict(output_router_logits=True), "router auxiliary loss"),
    }
    for model_type, (fields, reason) in cases.items():
        config = AutoConfig.for_model(model_type, **fields)
        aux = bool(getattr(config, "output_router_logits", False))
        assert reason in (unsupported_reason(config, aux) or ""), (model_type, unsupported_reason(config, aux))
    assert all(family.model_types for family in FAMILIES.values())
    with pytest.raises(ValueError, match="masks must be one of"):
        Family(("new",), masks="per-layer")  # a misspelt form is refused where the entry is written


@pytest.mark.parametrize("model_type", ["gemma2", "qwen3_moe"])
def test_held_out_scoring_takes_the_window_and_the_cap(model_type, demo_tokenizer):
    """eval's packed scorer gives what one padded row per answer gives (soft-cap, sliding window)."""
    from orpo_dist.eval.scoring import pair_logps, padded_pair_logps, tokenize_pairs

    from .orpo_step_cases import PAIRS

    model = tiny_model(model_type, demo_tokenizer).eval()
    tokenized, skipped = tokenize_pairs(demo_tokenizer, PAIRS, max_length=192)
    assert not skipped
    fast = pair_logps(model, tokenized, demo_tokenizer.pad_token_id, chunk_size=5)
    reference = padded_pair_logps(model, tokenized, demo_tokenizer.pad_token_id)
    for got, want in zip(fast, reference):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)


def test_a_frozen_head_takes_the_cap_in_its_own_backward(demo_tokenizer, tmp_path):
    """LoRA leaves the head frozen: the fast step projects it with its own autograd function
    (orpo/fast/head.py), whose backward must carry the soft-cap's slope."""
    from peft import LoraConfig

    model = tiny_model("gemma2", demo_tokenizer)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    for budget in (0, 2**30):  # logits recomputed, or kept were there no cap
        stock, fast = make_trainers(model, demo_tokenizer, orpo_args(tmp_path), peft_config=lora, chunk_size=5,
                                    keep_budget=budget)
        assert_same_step(stock, fast, collated(stock), logits_too=True)


def test_padding_positions_leave_longrope_on_its_short_factors(demo_tokenizer, tmp_path):
    """Phi-3's longrope picks its frequencies by the batch's largest position id. Rows rounded up
    to FlexAttention's 128-token blocks (GPUs) are far wider than any sequence: their padding
    must not carry positions past the real tokens' largest, or the long factors are taken."""
    from orpo_dist.orpo.fast.head import target_logps
    from orpo_dist.orpo.fast.hidden import per_pair_mean, target_hidden
    from orpo_dist.orpo.fast.packing import pack_pairs

    from .orpo_step_cases import PAIRS

    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 8, "long_factor": [4.0] * 8,
            "original_max_position_embeddings": 24}
    model = tiny_model("phi3", demo_tokenizer, rope_parameters=rope, original_max_position_embeddings=24).eval()
    short = [p for p in PAIRS if len(p["prompt"]) < 100]
    stock, _ = make_trainers(model, demo_tokenizer, orpo_args(tmp_path, per_device_train_batch_size=len(short)),
                             rows=short)
    batch = collated(stock)
    longest = max(int(batch[f"{side}_attention_mask"].sum(1).max()) for side in ("chosen", "rejected"))
    packed = pack_pairs(batch, demo_tokenizer.pad_token_id, pad_to_multiple_of=128, cost_per_pair=0.0)
    assert longest <= 24 < packed.input_ids.shape[1], (longest, packed.input_ids.shape)  # the case in question
    assert int(packed.position_ids.max()) == longest - 1
    with torch.no_grad():
        hidden = target_hidden(model, model, packed)
        logps, _ = target_logps(model.get_output_embeddings(), hidden, packed.target_tokens, chunk_size=0)
        chosen = per_pair_mean(logps, packed.target_pairs, packed.in_chosen, packed.num_pairs)
        expected = stock.policy_output(stock.model, batch).chosen_logps
    torch.testing.assert_close(chosen, expected, atol=1e-5, rtol=0)


def test_a_window_the_model_ignores_is_ignored_and_bidirectional_attention_is_refused():
    from transformers import AutoConfig

    from orpo_dist.architectures import attention_windows, unsupported_reason

    assert attention_windows(AutoConfig.for_model("llama", sliding_window=8)) == {None: None}
    assert attention_windows(AutoConfig.for_model("mistral", sliding_window=8)) == {None: 8}
    config = AutoConfig.for_model("gemma3_text", use_bidirectional_attention=True)
    assert "bidirectional" in unsupported_reason(config)

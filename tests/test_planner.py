"""The memory planner: DeepSpeed's own estimators, published data points, exact counts, bad input.

Fast and offline: models are built on the meta device (or tiny on the CPU); nothing downloads.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from orpo_dist.errors import UserError  # noqa: E402
from orpo_dist.planner.inputs import inputs_from_recipe, plan_recipe  # noqa: E402
from orpo_dist.strategies import FULL_OFFLOAD, strategy  # noqa: E402
from orpo_dist.planner.activations import activation_bytes  # noqa: E402
from orpo_dist.planner.memory import STRATEGIES, estimate  # noqa: E402
from orpo_dist.planner.spec import GiB, Assumptions, Hardware, Workload  # noqa: E402
from orpo_dist.planner.recommend import max_micro_batch, recommend, require_fit, split_global_batch  # noqa: E402
from orpo_dist.planner.printout import format_plan, plan_json  # noqa: E402
from orpo_dist.model_rules import plans_fast_step  # noqa: E402
from orpo_dist.model_shape import lora_params  # noqa: E402
from orpo_dist.planner.shapes import resolve_shape  # noqa: E402

from .helpers import TINY_LLAMA_SHAPE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
TINY = TINY_LLAMA_SHAPE


def plan_cli(*args: str) -> tuple[int, str, str]:
    """Run `orpo-dist plan ARGS` in this process (as the console script does)."""
    from orpo_dist.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", *args])
    return code, out.getvalue(), err.getvalue()


# --- model shapes ---------------------------------------------------------------------------

# Parameter counts published on the models' hub pages / by their authors.
PUBLISHED_PARAMS = {
    "meta-llama/Meta-Llama-3-8B-Instruct": 8_030_261_248,
    "meta-llama/Meta-Llama-3-70B": 70_553_706_496,
    "meta-llama/Llama-3.1-8B": 8_030_261_248,
    "mistralai/Mistral-7B-v0.1": 7_241_732_096,
    "mistralai/Mixtral-8x7B-Instruct-v0.1": 46_702_792_704,
    "Qwen/Qwen2.5-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "Qwen/Qwen2.5-72B": 72_706_203_648,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
    "smollm2-135m-instruct": 134_515_008,
}


@pytest.mark.parametrize("name,params", PUBLISHED_PARAMS.items())
def test_builtin_models_count_their_published_parameters(name, params):
    shape = resolve_shape(name)
    assert shape.source == "builtin"
    assert shape.total_params == params


def test_meta_device_counts_equal_a_real_model_and_peft(tmp_path):
    """Counts on the meta device equal a model really built (tied and untied), and LoRA counts
    equal PEFT's trainable parameters for every way of naming targets."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    for tied in (True, False):
        config = LlamaConfig(vocab_size=1000, tie_word_embeddings=tied, **TINY)
        (tmp_path / "config.json").write_text(config.to_json_string())
        shape = resolve_shape(str(tmp_path))
        assert shape.source == "local" and shape.tie_word_embeddings is tied
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        assert shape.total_params == sum(p.numel() for p in model.parameters())
        for targets in (None, "all-linear", ["q_proj", "v_proj"], r".*\.layers\.1\.mlp\.(gate|up)_proj"):
            peft_targets = list(QKVO) if targets is None else targets
            peft_model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=8, target_modules=peft_targets))
            trainable, _ = peft_model.get_nb_trainable_parameters()
            assert lora_params(shape, targets, 8) == trainable, targets


def test_names_aliases_and_local_config_json(tmp_path):
    assert resolve_shape("meta-llama/Meta-Llama-3-70B-Instruct").total_params == 70_553_706_496
    assert resolve_shape("Meta-Llama-3-8B").name == "meta-llama/Meta-Llama-3-8B"  # organisation optional
    assert resolve_shape("mistralai/Mistral-7B-Instruct-v0.2").name == "mistralai/Mistral-7B-v0.1"
    smol = resolve_shape("smollm2-135m-instruct")
    assert (smol.num_layers, smol.hidden_size, smol.vocab_size, smol.tie_word_embeddings) == (30, 576, 49152, True)
    # a config.json file path works as well as its folder
    from transformers import LlamaConfig

    (tmp_path / "config.json").write_text(LlamaConfig(vocab_size=777, **TINY).to_json_string())
    assert resolve_shape(str(tmp_path / "config.json")).vocab_size == 777
    # the tiny recipe's model: SmolLM2 with config overrides
    tiny = resolve_shape("smollm2-135m-instruct", TINY)
    assert (tiny.hidden_size, tiny.num_layers, tiny.head_dim, tiny.vocab_size) == (64, 2, 16, 49152)
    assert "overrides" in tiny.name


# --- DeepSpeed's own estimators -------------------------------------------------------------

DS_MODELS = ["meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "mistralai/Mixtral-8x7B-v0.1",
             "Qwen/Qwen2.5-0.5B", "HuggingFaceTB/SmolLM2-135M"]
DS_HARDWARE = [(1, 1), (2, 1), (8, 1), (8, 2), (4, 4)]  # (GPUs per node, nodes)


@pytest.mark.parametrize("model", DS_MODELS)
def test_full_finetuning_model_states_equal_deepspeeds_estimators(model):
    """GPU and host figures of every ZeRO strategy equal DeepSpeed's estimate_zero2/zero3 functions."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs as z3
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs as z2

    shape = resolve_shape(model)
    P, LL = shape.total_params, shape.largest_layer_params
    for gpn, nodes in DS_HARDWARE:
        plan = estimate(shape, "full", Hardware(gpn, nodes, 80), Workload())
        expected = {
            "zero2": z2(P, gpn, nodes, cpu_offload=False),
            "zero3": z3(P, LL, gpn, nodes, cpu_offload=False, cpu_offload_params=False, zero_init=True)[:2],
            "zero3-offload": z3(P, LL, gpn, nodes, cpu_offload=True, cpu_offload_params=False, zero_init=True)[:2],
            "zero3-offload-all": z3(P, LL, gpn, nodes, cpu_offload=True, cpu_offload_params=True, zero_init=True)[:2],
        }
        for strategy, (cpu, gpu) in expected.items():
            e = plan.strategy(strategy)
            assert (e.model_states, e.cpu) == (gpu, cpu), (model, gpn, nodes, strategy)


def test_deepspeed_all_cold_printouts_match():
    """DeepSpeed's printing estimators (the ones its docs tell users to run) show our figures."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_cold

    shape = resolve_shape("meta-llama/Meta-Llama-3-70B")
    for gpn, nodes in ((8, 1), (8, 4)):
        plan = estimate(shape, "full", Hardware(gpn, nodes, 80), Workload())
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            estimate_zero2_model_states_mem_needs_all_cold(shape.total_params, gpn, nodes)
            estimate_zero3_model_states_mem_needs_all_cold(shape.total_params, shape.largest_layer_params, gpn, nodes)
        rows = {}
        for line in text.getvalue().splitlines():
            m = re.match(r"\s*([\d.]+)GB \|\s*([\d.]+)GB \| (.*)", line)
            if m:
                option = re.sub(r"\s+", "", m.group(3)).replace("OffloadDeviceEnum.", "")  # enum repr on 3.11
                rows.setdefault(option, (m.group(1), m.group(2)))
        options = {
            "zero2": "offload_optimizer=none",
            "zero3": "offload_param=none,offload_optimizer=none,zero_init=1",
            "zero3-offload": "offload_param=none,offload_optimizer=cpu,zero_init=1",
            "zero3-offload-all": "offload_param=cpu,offload_optimizer=cpu,zero_init=1",
        }
        for strategy, option in options.items():
            e = plan.strategy(strategy)
            assert rows[option] == (f"{e.cpu / GiB:.2f}", f"{e.model_states / GiB:.2f}"), strategy


def test_largest_layer_and_total_as_deepspeed_counts_a_live_model():
    import torch
    from deepspeed.runtime.zero.stage3 import model_to_params
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = resolve_shape("smollm2-135m-instruct", TINY)
    config = AutoConfig.for_model("llama", **{k: v for k, v in shape.config.items() if k != "model_type"})
    torch.manual_seed(0)
    assert model_to_params(AutoModelForCausalLM.from_config(config)) == (shape.total_params, shape.largest_layer_params)


# --- published data points ------------------------------------------------------------------

def test_seed_tutorial_llama3_8b_qlora_fits_16gb_at_about_10gb():
    """The seed tutorial: Llama-3-8B QLoRA, batch 1, max_length 1024, r=16 on q,k,v,o, gradient
    checkpointing, paged_adamw_8bit: fits a 16 GB GPU and needs about 10 GB."""
    values = _recipe(REPO / "orpo_dist/recipes/llama3-8b-qlora.yaml") | {"per_device_train_batch_size": 1,
                                                                      "gradient_accumulation_steps": 1,
                                                                      "orpo_step": "stock"}  # TRL's algorithm, as measured
    plan, rec = plan_recipe(values, Hardware(gpus_per_node=1, gpu_mem_gib=16))
    assert plan.method == "qlora" and plan.lora_targets == QKVO and plan.workload.optim == "paged_adamw_8bit"
    single = plan.strategy("single")
    assert single.fits and rec.strategy == "single"
    assert 9.0e9 <= single.peak <= 11.0e9, single.peak / 1e9  # "about 10 GB"
    assert 5.0 <= single.gpu["frozen_weights"] / GiB <= 5.6  # 4-bit base + bf16 embeddings and head
    assert not estimate(plan.shape, "qlora", Hardware(gpu_mem_gib=8), plan.workload).strategy("single").fits


@pytest.mark.parametrize("max_length", [1024, 2048])
def test_answerdotai_70b_qlora_on_two_24gb_gpus_needs_cpu_offload(tmp_path, max_length):
    """AnswerDotAI's fsdp_qlora: Llama-2-70B QLoRA on 2 x 24 GB fits only with CPU offload of the
    parameters too (their run: FSDP with CPU offload, which fsdp2-offload is)."""
    config = {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000,
              "tie_word_embeddings": False}  # meta-llama/Llama-2-70b-hf's config.json
    (tmp_path / "config.json").write_text(json.dumps(config))
    workload = Workload(max_length=max_length, micro_batch=1, lora_r=64, lora_targets="all-linear")
    plan = estimate(resolve_shape(str(tmp_path)), "qlora", Hardware(gpus_per_node=2, gpu_mem_gib=24), workload)
    fits = [e.strategy for e in plan.estimates if e.fits]
    assert fits == ["fsdp2-offload", "zero3-offload-all"]
    assert all(strategy(name).offload == FULL_OFFLOAD for name in fits)
    assert recommend(plan).strategy == "fsdp2-offload"
    # the same run on 80 GB GPUs needs no offload
    big = estimate(plan.shape, "qlora", Hardware(gpus_per_node=2, gpu_mem_gib=80), workload)
    assert recommend(big).strategy == "ddp"


# --- the memory model -----------------------------------------------------------------------

RUNS = [("float32", "full", 0.0), ("bfloat16", "full", 0.0), ("float32", "lora", 0.0),
        ("bfloat16", "lora", 0.0), ("bfloat16", "lora", 0.05), ("float32", "lora", 0.05)]
# The fast step's finer checkpointing per method: "mlp" is modelled exactly for full fine-tuning only.
POLICIES_BY_METHOD = {"full": ("none", "norms", "norms+mlp-act", "mlp"), "lora": ("none", "norms+mlp-act")}


@pytest.mark.parametrize("zero3", [False, True], ids=["plain", "zero3-linear"])
@pytest.mark.parametrize("dtype,method,dropout,policy",
                         [(*run, policy) for run in RUNS for policy in POLICIES_BY_METHOD[run[1]]])
def test_activation_model_equals_what_autograd_saves(dtype, method, dropout, policy, zero3, monkeypatch):
    """Per token and decoder layer, the formula equals the bytes autograd saves for backward in a
    real (small) llama: norms, SDPA attention with a padding mask, MLP and LoRA adapters; under
    ZeRO-3, whose F.linear replacement (DeepSpeed's own, patched in as zero.Init does) saves more;
    and with the fast step's checkpointing policies applied to the decoder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from orpo_dist.orpo.fast import checkpointing


    if zero3:
        from deepspeed.runtime.zero.linear import zero3_linear_wrap

        monkeypatch.setattr(torch.nn.functional, "linear", zero3_linear_wrap)

    dims = dict(hidden_size=96, intermediate_size=160, num_attention_heads=6, num_key_value_heads=2, vocab_size=512)
    batch, length = 2, 32

    def saved_bytes(layers: int) -> int:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, **dims)).to(getattr(torch, dtype))
        if method == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=8, target_modules=list(QKVO), lora_dropout=dropout))
        checkpointing.apply((model.get_base_model() if method == "lora" else model).get_decoder(), policy)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        ids = torch.randint(0, 512, (2 * batch, length))
        mask = torch.ones_like(ids)
        mask[batch:, -5:] = 0  # rejected rows padded: a mask reaches SDPA, as in ORPO batches
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(ids, attention_mask=mask, use_cache=False)
        del out
        return sum(seen.values())

    per_layer = (saved_bytes(3) - saved_bytes(1)) / 2 / (2 * batch * length)
    shape = resolve_shape("smollm2", dict(dims, num_hidden_layers=3, tie_word_embeddings=False))
    workload = Workload(max_length=length, micro_batch=batch, gradient_checkpointing=False, lora_r=8,
                        lora_targets=QKVO, lora_dropout=dropout, dtype=dtype, fast_step=policy != "none",
                        checkpoint_policy=policy)
    _, detail = activation_bytes(shape, method, Hardware(device="cpu"), workload, Assumptions(), zero3_linear=zero3)
    assert detail["per_token_per_layer"] == pytest.approx(per_layer, rel=0.01)


def test_logits_are_twice_the_batch_times_length_times_vocab():
    shape = resolve_shape("meta-llama/Meta-Llama-3-8B")
    plan = estimate(shape, "lora", Hardware(), Workload(max_length=2048, micro_batch=3))
    assert plan.strategy("single").gpu["logits"] == 2 * 3 * 2048 * 128256 * 2  # bf16 on GPUs
    cpu = estimate(shape, "lora", Hardware(device="cpu"), Workload(max_length=2048, micro_batch=3))
    assert cpu.strategy("single").gpu["logits"] == 2 * 3 * 2048 * 128256 * 4  # fp32 on CPU


def test_fast_step_plans_one_logits_chunk_and_a_larger_micro_batch():
    """The fast step (default for llama-family recipes) holds one chunk x vocab of fp32 logits, not
    2 x B x L x vocab, so more pairs fit per device; `stock` plans TRL's step."""
    values = _recipe(REPO / "orpo_dist/recipes/llama3-8b-qlora.yaml")
    assert inputs_from_recipe(values).workload.fast_step
    assert not inputs_from_recipe(values | {"orpo_step": "stock"}).workload.fast_step
    assert inputs_from_recipe({"model_name_or_path": "mistralai/Mixtral-8x7B-v0.1"}).workload.fast_step  # architectures.py
    assert not plans_fast_step("auto", "gpt2") and not plans_fast_step("stock", "mixtral")
    hw = Hardware(gpus_per_node=1, gpu_mem_gib=24)
    fast, rec_fast = plan_recipe(values, hw)
    stock, rec_stock = plan_recipe(values | {"orpo_step": "stock"}, hw)
    assert fast.strategy("single").gpu["logits"] == 1024 * 128256 * 4
    assert stock.strategy("single").gpu["logits"] == 2 * 2 * 1024 * 128256 * 2
    assert rec_fast.max_micro_batch > rec_stock.max_micro_batch
    assert "fast ORPO step" in format_plan(fast) and "stock ORPO step" in format_plan(stock)


@pytest.mark.parametrize("trained", [True, False], ids=["trained-head", "frozen-head"])
@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("chunks", [1, 2, 4])
def test_fast_head_peak_equals_the_live_tensors_of_its_forward_and_backward(trained, keep, chunks):
    """The planner's fast-step logits + loss buffers against the most bytes of tensors alive at once
    (counted on every op's outputs, freed when their storage dies) while the real head,
    orpo/fast/head.target_logps, runs forward and backward: equal within 5% once the targets
    span several chunks; for one chunk the plan may overcount by about one chunk, never undercount."""
    import types
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from orpo_dist.orpo.fast.head import target_logps
    from orpo_dist.planner.memory import _logits_bytes, _loss_buffer_bytes

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0
            self.storages: set[int] = set()

        def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes():
                    storage = t.untyped_storage()
                    key, size = storage.data_ptr(), storage.nbytes()
                    if key not in self.storages:  # a new allocation, not a view or an in-place result
                        self.storages.add(key)
                        self.live += size
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(storage, self._freed, key, size)
            return out

        def _freed(self, key, size):
            self.live -= size
            self.storages.discard(key)

    vocab, hidden_size, chunk = 4096, 8, 256  # hidden-sized tensors (activations, counted elsewhere) ~1% of a chunk
    targets = chunks * chunk
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden_size, vocab, bias=False).requires_grad_(trained)
    hidden = torch.randn(targets, hidden_size, requires_grad=True)
    tokens = torch.randint(0, vocab, (targets,))
    budget_mb = 1024 if keep else 0
    counter = LiveBytes()
    with counter:
        logps, _ = target_logps(head, hidden, tokens, chunk, keep_budget=budget_mb * 2**20)
        logps.sum().backward()
    weight_grad = head.weight.numel() * 4 if trained else 0  # the planner counts it with the gradients
    measured = counter.peak - weight_grad
    workload = Workload(max_length=targets // 2, micro_batch=1, fast_step=True, orpo_chunk_size=chunk,
                        orpo_logits_budget_mb=budget_mb)
    shape = types.SimpleNamespace(vocab_size=vocab)
    planned = _logits_bytes(shape, workload, 4) + _loss_buffer_bytes(shape, workload, 4, Assumptions(), trained)
    one_chunk = chunk * vocab * 4
    if chunks == 1:
        assert measured - 0.05 * one_chunk <= planned <= measured + 1.15 * one_chunk
    else:
        assert planned == pytest.approx(measured, rel=0.05)


def test_memory_grows_with_batch_length_and_shrinks_with_checkpointing_and_gpus():
    shape = resolve_shape("meta-llama/Meta-Llama-3-8B")
    hw = Hardware(gpus_per_node=8, gpu_mem_gib=80)
    base = estimate(shape, "full", hw, Workload(micro_batch=2, gradient_checkpointing=False))
    checkpointed = base.workload.replace(gradient_checkpointing=True)

    def peak(strategy, **kw):
        return estimate(shape, kw.pop("method", "full"), kw.pop("hw", hw),
                        base.workload.replace(**kw)).strategy(strategy).peak

    assert peak("zero2", micro_batch=4) > peak("zero2", micro_batch=2)
    assert peak("zero2", max_length=2048) > peak("zero2", max_length=1024)
    assert peak("zero2", gradient_checkpointing=True) < peak("zero2", gradient_checkpointing=False)
    assert peak("zero3", hw=Hardware(8, 2, 80)) < peak("zero3")
    by_method = [estimate(shape, m, Hardware(gpu_mem_gib=80), checkpointed).strategy("single").peak
                 for m in ("qlora", "lora", "full")]
    assert by_method == sorted(by_method)
    order = [base.strategy(s).model_states for s in ("ddp", "zero2", "zero3", "zero3-offload", "zero3-offload-all")]
    assert order == sorted(order, reverse=True)


def test_cpu_device_predicts_fp32_processes():
    """--device cpu: fp32 weights, no CUDA context; the tiny recipe's model and SmolLM2-135M."""
    tiny = estimate(resolve_shape("smollm2-135m-instruct", TINY), "full", Hardware(device="cpu", gpu_mem_gib=8),
                    Workload(max_length=128, micro_batch=4, gradient_checkpointing=False))
    e = tiny.strategy("single")
    assert tiny.weight_bytes == 4 and e.gpu["overhead"] == int(0.6 * GiB)
    assert e.gpu["logits"] == 2 * 4 * 128 * 49152 * 4
    assert 1.2 * GiB < e.peak < 2.0 * GiB  # measured on this machine: 1.4-1.6 GiB peak RSS
    smol = estimate(resolve_shape("smollm2-135m-instruct"), "full", Hardware(device="cpu", gpu_mem_gib=8),
                    Workload(max_length=128, micro_batch=2, gradient_checkpointing=False))
    e = smol.strategy("single")
    assert e.gpu["trainable_weights"] == 4 * 134_515_008 and e.gpu["optimizer_states"] == 8 * 134_515_008
    assert 2.9 * GiB < e.peak < 3.8 * GiB  # measured: 3.4 GiB peak RSS


# --- recommendation -------------------------------------------------------------------------

def test_done_criterion_70b_lora_on_8x80_offline():
    code, out, err = plan_cli("--model", "meta-llama/Meta-Llama-3-70B", "--method", "lora",
                              "--gpus-per-node", "8", "--gpu-mem", "80")
    assert code == 0, err
    # FSDP2 and ZeRO-3 both fit: FSDP2 comes first in the registry's order (README says why).
    assert "recommended: fsdp2 at micro-batch 1" in out
    for label in ("DDP", "ZeRO-2", "FSDP2", "ZeRO-3", "ZeRO-3 + opt offload", "ZeRO-3 + full offload"):
        assert label in out
    code, out, _ = plan_cli("--model", "meta-llama/Meta-Llama-3-70B", "--method", "lora",
                            "--gpus-per-node", "8", "--gpu-mem", "80", "--json")
    data = json.loads(out)
    assert code == 0 and data["recommendation"]["strategy"] == "fsdp2"
    assert {s["strategy"]: s["fits"] for s in data["strategies"]}["zero3"]
    assert [s["strategy"] for s in data["strategies"]] == list(STRATEGIES)
    assert data["recommendation"]["max_micro_batch"] >= 1


def test_largest_micro_batch_and_accumulation_keep_the_global_batch():
    shape = resolve_shape("meta-llama/Meta-Llama-3-8B")
    plan = estimate(shape, "lora", Hardware(gpus_per_node=2, gpu_mem_gib=24),
                    Workload(max_length=2048, micro_batch=8, grad_accum=2))  # global 32
    rec = recommend(plan)
    best = max_micro_batch(plan, rec.strategy)
    assert rec.max_micro_batch == best >= 1
    from orpo_dist.planner.recommend import fits_at

    assert fits_at(plan, rec.strategy, best).fits and not fits_at(plan, rec.strategy, best + 1).fits
    assert rec.micro_batch * rec.grad_accum * 2 == rec.global_batch == 32
    assert rec.micro_batch <= best and any("does not fit" in n for n in rec.notes)
    assert split_global_batch(32, 2, 5) == (4, 4, 32, [])
    assert split_global_batch(4, 8, 3)[:3] == (1, 1, 8)


def test_nothing_fits_says_what_would():
    shape = resolve_shape("meta-llama/Meta-Llama-3-70B")
    plan = estimate(shape, "full", Hardware(gpus_per_node=1, gpu_mem_gib=24, cpu_mem_gib=64), Workload())
    rec = recommend(plan)
    assert rec.strategy is None and not any(e.fits for e in plan.estimates)
    text = " | ".join(rec.suggestions)
    assert "more host memory: zero3-offload-all" in text
    assert re.search(r"more GPUs: \d+ .* fit with zero3", text) and "--method qlora" in text
    out = format_plan(plan, rec)
    assert "nothing fits" in out and "What would" in out
    # activations too big for any strategy: shorter sequences (and checkpointing) are what help
    long = estimate(shape, "qlora", Hardware(gpu_mem_gib=24), Workload(max_length=8192, gradient_checkpointing=False))
    assert any("shorter max_length" in s and "gradient checkpointing on" in s for s in recommend(long).suggestions)


def test_require_fit_refuses_what_cannot_fit_unless_forced():
    plan = estimate(resolve_shape("meta-llama/Meta-Llama-3-70B"), "lora", Hardware(gpus_per_node=8, gpu_mem_gib=80),
                    Workload())
    with pytest.raises(UserError, match=r"(?s)ddp will not fit.*recommends fsdp2.*--force"):
        require_fit(plan, "ddp")
    assert require_fit(plan, "ddp", force=True).strategy == "ddp"
    assert require_fit(plan, "zero3").fits
    with pytest.raises(UserError, match="needs exactly one device"):
        require_fit(plan, "single")


def test_detect_hardware_for_a_launch(monkeypatch):
    from orpo_dist.planner import detect
    from orpo_dist.planner.detect import detect_hardware, host_memory_gib

    monkeypatch.setattr(detect, "_gpu_memories_gib", lambda: [])  # this machine: CPU processes
    hw = detect_hardware(4, 2)
    assert (hw.device, hw.gpus_per_node, hw.nodes) == ("cpu", 2, 2)
    assert hw.gpu_mem_gib == pytest.approx(host_memory_gib() / 2)
    monkeypatch.setattr(detect, "_gpu_memories_gib", lambda: [79.3, 79.1])
    hw = detect_hardware(16, 2, cpu_mem_gib=1024)
    assert (hw.device, hw.gpus_per_node, hw.gpu_mem_gib, hw.cpu_mem_gib) == ("cuda", 8, 79.1, 1024)
    assert detect_hardware(2, gpu_mem_gib=24).gpu_mem_gib == 24
    with pytest.raises(UserError, match="divide evenly"):
        detect_hardware(3, 2)


def test_strategy_names_are_the_launchers():
    from orpo_dist.strategies import STRATEGIES as LAUNCHER

    assert STRATEGIES is LAUNCHER  # one home: the planner estimates the launcher's own names


# --- recipes --------------------------------------------------------------------------------

def _recipe(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_inputs_from_the_shipped_recipes():
    shape, method, wl = inputs_from_recipe(_recipe(REPO / "orpo_dist/recipes/llama3-8b-qlora.yaml"))
    assert (shape.name, method) == ("meta-llama/Meta-Llama-3-8B", "qlora")
    assert (wl.max_length, wl.micro_batch, wl.grad_accum, wl.gradient_checkpointing) == (1024, 2, 4, True)
    assert (wl.lora_r, tuple(wl.lora_targets), wl.optim, wl.double_quant, wl.dtype) == \
        (16, QKVO, "paged_adamw_8bit", True, "bfloat16")
    shape, method, wl = inputs_from_recipe(_recipe(REPO / "orpo_dist/recipes/tiny.yaml"))
    assert method == "full" and (shape.hidden_size, shape.num_layers, shape.vocab_size) == (64, 2, 49152)
    assert (wl.micro_batch, wl.max_length, wl.gradient_checkpointing) == (4, 128, False)
    assert inputs_from_recipe({"model_name_or_path": "smollm2", "use_peft": True,
                               "lora_all_linear": True}).workload.lora_targets == "all-linear"


def test_recipe_defaults_are_trls(tmp_path):
    """A field a recipe leaves out is planned at TRL's default: the value the training parser gives it."""
    import dataclasses

    from trl import ModelConfig
    from trl.experimental.orpo import ORPOConfig

    from orpo_dist.recipe import check_without_hardware

    sparse = {"model_name_or_path": "smollm2", "use_peft": True}
    path = tmp_path / "sparse.yaml"
    path.write_text(json.dumps(sparse))
    planned = inputs_from_recipe(sparse).workload
    assert planned == inputs_from_recipe(check_without_hardware(str(path), [])).workload
    trl = {f.name: f.default for cls in (ORPOConfig, ModelConfig) for f in dataclasses.fields(cls)}
    assert (planned.max_length, planned.micro_batch, planned.gradient_checkpointing, planned.lora_r,
            planned.lora_dropout, planned.optim, planned.double_quant) == \
        (trl["max_length"], trl["per_device_train_batch_size"], trl["gradient_checkpointing"], trl["lora_r"],
         trl["lora_dropout"], trl["optim"], trl["use_bnb_nested_quant"])


def test_plan_command_reads_a_recipe_and_flags_override_it():
    code, out, err = plan_cli("--recipe", str(REPO / "orpo_dist/recipes/llama3-8b-qlora.yaml"), "--gpu-mem", "24",
                              "--batch", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "qlora" and data["workload"]["micro_batch"] == 1
    assert data["recommendation"]["strategy"] == "single"


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--model", "some-org/not-a-model"], r"unknown model 'some-org/not-a-model'.*Built-in models"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--gpus-per-node", "0"], r"--gpus-per-node: must be .* at least 1"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--nodes", "-1"], r"--nodes: must be .* at least 1"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--gpu-mem", "-80"], r"--gpu-mem: must be a number above 0"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--gpu-mem", "0"], r"--gpu-mem: must be a number above 0"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--cpu-mem", "-1"], r"--cpu-mem: must be a number above 0"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--max-length", "0"], r"--max-length must be .* at least 1"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--batch", "-2"], r"--batch must be .* at least 1"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--margin", "1.5"], r"--margin must be in"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--method", "lora", "--lora-targets", "qproj"],
     r"qproj match no linear layer.*q_proj"),
    (["--model", "meta-llama/Meta-Llama-3-8B", "--model-config-overrides", '{"bogus": 1}'], r"has no field 'bogus'"),
    (["--model", "/nonexistent/model"], r"does not exist"),
    (["--recipe", "/nonexistent/recipe.yaml"], r"recipe .* does not exist"),
    ([], r"which model\? pass --model"),
])
def test_bad_input_gets_a_clear_message_and_exit_2(args, message):
    code, out, err = plan_cli(*args)
    assert code == 2 and out == ""
    assert re.search(message, err, re.S), err
    assert "Traceback" not in err and re.search(r"^orpo-dist plan: error: ", err, re.M)  # argparse: usage first


def test_folder_without_config_and_unknown_model_offline(tmp_path, monkeypatch):
    code, _, err = plan_cli("--model", str(tmp_path))
    assert code == 2 and "has no config.json" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        resolve_shape("acme/llama-99b")


def test_unknown_model_with_the_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UserError, match=r"(?s)hub cannot be reached.*Built-in models"):
        resolve_shape("acme/llama-99b")


# --- docs -----------------------------------------------------------------------------------

def test_docs_table_is_the_planners_output():
    """docs/planner.md holds exactly what `python -m orpo_dist.planner.table` prints."""
    from orpo_dist.planner.table import render

    assert render() in (REPO / "docs/planner.md").read_text()


def test_table_module_runs():
    done = subprocess.run([sys.executable, "-m", "orpo_dist.planner.table"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "| qlora | 16 (2 x 8) |" in done.stdout and "meta-llama/Meta-Llama-3-70B" in done.stdout


def test_table_follows_the_host_memory_it_is_given():
    """Less host memory per GPU takes the offload strategies away (70B full FT on 16 x 80 GB)."""
    from orpo_dist.planner.table import cell, render

    workload = Workload(max_length=1024, gradient_checkpointing=True)
    assert cell("meta-llama/Meta-Llama-3-70B", "full", 16, 80, workload).startswith("zero3-offload")
    assert cell("meta-llama/Meta-Llama-3-70B", "full", 16, 80, workload, host_gib_per_gpu=32) == "-"
    assert render(host_gib_per_gpu=32).endswith("`python -m orpo_dist.planner.table --host-gib-per-gpu 32`.")


def test_plans_for_cpu_processes_warn_about_glibc_and_gpu_plans_do_not():
    shape = resolve_shape("smollm2")
    cpu = recommend(estimate(shape, "lora", Hardware(gpu_mem_gib=16, device="cpu"), Workload()))
    gpu = recommend(estimate(shape, "lora", Hardware(gpu_mem_gib=16), Workload()))
    assert any("glibc" in n for n in cpu.notes) and not any("glibc" in n for n in gpu.notes)


def test_plan_json_is_complete():
    plan = estimate(resolve_shape("Qwen/Qwen2.5-7B"), "lora", Hardware(gpus_per_node=4, gpu_mem_gib=40), Workload())
    data = json.loads(plan_json(plan))
    first = data["strategies"][1]
    assert set(first["breakdown_gib"]) >= {"frozen_weights", "trainable_weights", "gradients", "optimizer_states",
                                          "activations", "logits", "overhead"}
    assert data["model"]["total_params"] == 7_615_616_512 and data["unit"].startswith("GiB")

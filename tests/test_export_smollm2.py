"""Export of the real SmolLM2-135M-Instruct as a GGUF, read back by transformers.

Bounds, as the worst relative RMS logit error ||diff|| / ||logits|| over the prompts below:
f16 <= 2e-3 (measured 7.7e-4), q8_0 <= 5e-2 (measured 2.6e-2); greedy next tokens agree at
>= 99% (f16, measured 100%) / 95% (q8_0, measured 97.5%) of the prompt positions. Against the source
with its matrices rounded as the format stores them, the logits agree to <= 1e-4: the error is the
format's rounding and nothing else.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from orpo_dist.export.chat_template import PROBES
from orpo_dist.export.cli import export_run

from .test_export import STRINGS, relative_error, through_format, write_recipe

pytestmark = pytest.mark.slow

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. Ünïcödé — 日本語, 3.14159 and 1,000,000.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]
BOUND = {"f16": (2e-3, 0.99), "q8_0": (5e-2, 0.95)}


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory, demo_model_dir):
    """A full-fine-tune run folder holding the real SmolLM2 (linked, not copied)."""
    run = tmp_path_factory.mktemp("smollm2-run")
    for item in demo_model_dir.iterdir():
        (run / item.name).symlink_to(item)
    write_recipe(run, model_name_or_path=str(demo_model_dir))
    return run


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_smollm2_gguf_matches_the_source(smollm2_run, gguf_type, demo_model_dir, demo_tokenizer, tmp_path):
    result = export_run(smollm2_run, gguf_type=gguf_type, out=tmp_path, progress=False)
    name = result["gguf"]["path"].rsplit("/", 1)[-1]
    source = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=name, dtype=torch.float32).eval()
    rounded = through_format(source, gguf_type)
    errors, agree, positions = [], 0, 0
    for prompt in PROMPTS:
        ids = demo_tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            ref, got = source(ids).logits[0], back(ids).logits[0]
            assert (got - rounded(ids).logits[0]).abs().max().item() <= 1e-4
        errors.append(relative_error(got, ref))
        agree += (got.argmax(-1) == ref.argmax(-1)).sum().item()
        positions += ids.shape[1]
    bound, min_agreement = BOUND[gguf_type]
    print(f"SmolLM2 {gguf_type}: relative RMS logit error {max(errors):.3g}, greedy agreement {agree / positions:.1%}, "
          f"{result['gguf']['bytes'] / 2**20:.1f} MiB")
    assert max(errors) <= bound and agree / positions >= min_agreement
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=name)
    for text in STRINGS + PROMPTS:
        assert tokenizer(text)["input_ids"] == demo_tokenizer(text)["input_ids"], text
    for probe in PROBES:
        assert tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True) == \
            demo_tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)


# llama.cpp computes with the stored types (f16 products; q8_0 also rounds the activations to 8
# bits), so it sits a little further from the source than transformers' f32 read-back. Measured
# with llama-cpp-python 0.3.36: f16 1.2e-3 / 100%, q8_0 3.9e-2 / 92.5% of 80 positions.
LLAMA_CPP_BOUND = {"f16": (3e-3, 0.99), "q8_0": (6e-2, 0.88)}


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_llama_cpp_tokenizes_and_scores_the_export_as_the_source(smollm2_run, gguf_type, demo_model_dir,
                                                                  demo_tokenizer, tmp_path):
    """The real client is the judge: llama.cpp loads our GGUF, splits every test string into the
    same token ids as the HF tokenizer, and its logits match the source model's."""
    from orpo_dist.export import llama_cpp

    result = export_run(smollm2_run, gguf_type=gguf_type, out=tmp_path, progress=False)
    texts = STRINGS + PROMPTS
    judged = llama_cpp.ask(result["gguf"]["path"], tokenize=texts, logits=PROMPTS)
    for text, ids in zip(texts, judged["tokens"]):
        assert ids == demo_tokenizer(text, add_special_tokens=False)["input_ids"], text
    source = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()
    errors, agree, positions = [], 0, 0
    for prompt, scores in zip(PROMPTS, judged["logits"]):
        ids = demo_tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = source(ids).logits[0]
        got = torch.tensor(scores)
        assert got.shape == ref.shape
        errors.append(relative_error(got, ref))
        agree += (got.argmax(-1) == ref.argmax(-1)).sum().item()
        positions += ids.shape[1]
    bound, min_agreement = LLAMA_CPP_BOUND[gguf_type]
    print(f"llama.cpp on SmolLM2 {gguf_type}: relative RMS logit error {max(errors):.3g}, "
          f"greedy agreement {agree / positions:.1%} of {positions}")
    assert max(errors) <= bound and agree / positions >= min_agreement

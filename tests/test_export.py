"""`orpo-dist export`: merged logits, GGUF round trips through transformers, Modelfile, errors.

Tiny random llamas with the real SmolLM2 tokenizer; the adapters are random (not zero-initialised)
so that merging changes the model measurably. Tolerances (fp32 on CPU):
- merged vs base + adapter: max |logit difference| <= 1e-5 (measured ~7e-7).
- GGUF read back by transformers vs the merged model, as relative RMS error ||diff|| / ||logits||:
  f16 <= 2e-3 (measured 6.9e-4), q8_0 <= 8e-2 (measured 3.4e-2; random tiny models amplify
  rounding, see the SmolLM2 test for a real model); and vs the merged model whose weights went
  through the format's own rounding: max |diff| <= 1e-5 (measured 0.0), i.e. everything but the
  format's rounding is exact (tensor names, q/k permutation, tying, metadata).
"""

from __future__ import annotations

import copy
import json
import re

import gguf
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from orpo_dist.errors import UserError
from orpo_dist.export.architectures import gguf_arch
from orpo_dist.export.chat_template import PROBES, detect_chatml
from orpo_dist.export.cli import export_run
from orpo_dist.export.gguf_vocab import pre_tokenizer_name
from orpo_dist.export.gguf_writer import write_gguf
from orpo_dist.export.modelfile import modelfile_text

from .conftest import TINY_LLAMA
from .gotemplate import ollama_messages, render
from .helpers import TINY_RECIPE, run_case, run_cli

PROMPT = "Hello world, héllo ✓ 123\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
STRINGS = [
    "Hello world",
    "héllo wörld — ✓ 日本語 🙂 Ünïcödé",
    "  multiple   spaces\n\n\ttabs ",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x",
    "12345 3.14159 1,000,000",
    "def f(x):\n    return x**2  # ok",
    "",
]
BOUND = {"f16": 2e-3, "q8_0": 8e-2}


def write_recipe(run_dir, **fields):
    """The run folder's recipe, in a folder claimed as training claims it."""
    from orpo_dist.run_lock import claim

    claim(run_dir, "orpo-dist train")
    fields = {"dataset_name": "orpo-dist-demo", "output_dir": str(run_dir), "report_to": "none", **fields}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(fields))


from .helpers import random_adapter  # noqa: E402


def logits(model, tokenizer, text=PROMPT):
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model.eval()(ids).logits[0].float()


def relative_error(got, ref):
    """Relative RMS error of logits: ||got - ref|| / ||ref||."""
    return ((got - ref).norm() / ref.norm()).item()


def through_format(model, gguf_type):
    """The model with every matrix rounded as the GGUF stores it (vectors stay f32, as written)."""
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[gguf_type]
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for param in rounded.parameters():
            if param.dim() == 2:
                data = param.detach().numpy()
                back = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
                param.copy_(torch.from_numpy(back.reshape(data.shape)))
    return rounded


def load_gguf_model(folder, name):
    # Reading a GGUF's 49k-token vocabulary takes transformers ~7 s per pass (two per model).
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()


def gguf_name(results, gguf_type):
    return results[gguf_type]["gguf"]["path"].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def small_tokenizer(demo_tokenizer):
    """A byte-level BPE of 400 tokens trained here (GGUFs of it load in a second), with the demo's
    special tokens and ChatML template: for tests about tensors and pre-tokenizers, not the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [row["chosen"] for row in _demo_rows()] + STRINGS
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tokenizer.chat_template = demo_tokenizer.chat_template
    return tokenizer


def _demo_rows():
    import json
    from importlib.resources import files

    text = files("orpo_dist").joinpath("demo_data/train.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()[:200]]


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory):
    """The LoRA run exported once: merged folder + f16 GGUF, then q8_0 GGUF into the same folder."""
    out = tmp_path_factory.mktemp("export")
    results = {"f16": export_run(lora_run, merge=True, gguf_type="f16", out=out, progress=False)}
    results["q8_0"] = export_run(lora_run, gguf_type="q8_0", out=out, progress=False)
    return out, results


def test_lora_merge_equals_base_plus_adapter(lora_run, exported, tiny_model_dir, demo_tokenizer):
    from peft import PeftModel

    out, _ = exported
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = logits(PeftModel.from_pretrained(base, lora_run), demo_tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    got = logits(merged, demo_tokenizer)
    assert (got - reference).abs().max().item() <= 1e-5
    # The adapter matters: the merge is not the base model passed through.
    assert (logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), demo_tokenizer) - reference).abs().max() > 0.1
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    assert tokenizer.chat_template == demo_tokenizer.chat_template
    assert (out / "merged" / "model.safetensors").is_file()


def test_qlora_merges_into_the_unquantised_base(tmp_path, tiny_model_dir, demo_tokenizer):
    from peft import PeftModel
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    quantised_base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant,
                                                          device_map={"": "cpu"})
    run = tmp_path / "qlora-run"
    quantised_run = random_adapter(quantised_base)
    quantised_run.save_pretrained(run)
    demo_tokenizer.save_pretrained(run)
    write_recipe(run, model_name_or_path=str(tiny_model_dir), use_peft=True, load_in_4bit=True,
                 bnb_4bit_quant_type="nf4", lora_r=4, lora_alpha=8)

    result = export_run(run, merge=True, out=tmp_path / "out", progress=False)
    assert result["kind"] == "qlora"
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    assert getattr(merged.config, "quantization_config", None) is None
    assert {p.dtype for p in merged.parameters()} == {torch.float32}  # the run's float dtype on a CPU
    unquantised = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run)
    reference = logits(unquantised, demo_tokenizer)
    got = logits(merged, demo_tokenizer)
    assert (got - reference).abs().max().item() <= 1e-5
    # What training saw (4-bit base + adapter) differs by NF4's rounding of the base only.
    in_training = logits(quantised_run, demo_tokenizer)
    gap = relative_error(in_training, got)
    print(f"QLoRA: 4-bit base + adapter vs merged unquantised: relative RMS logit error {gap:.3g}")
    assert 1e-4 < gap < 0.5


def test_full_fine_tune_is_exported_as_saved(tmp_path, tiny_model_dir, demo_tokenizer):
    run = tmp_path / "full-run"
    saved = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    saved.save_pretrained(run)
    demo_tokenizer.save_pretrained(run)
    write_recipe(run, model_name_or_path=str(tiny_model_dir))
    result = export_run(run, merge=True, progress=False)
    assert result["kind"] == "full" and result["out"] == str(run / "export")
    copy_ = AutoModelForCausalLM.from_pretrained(run / "export" / "merged")
    assert torch.equal(logits(copy_, demo_tokenizer), logits(saved, demo_tokenizer))


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_gguf_logits_are_within_the_format_error(exported, gguf_type, demo_tokenizer):
    out, results = exported
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    reference = logits(merged, demo_tokenizer)
    got = logits(load_gguf_model(out, gguf_name(results, gguf_type)), demo_tokenizer)
    error = relative_error(got, reference)
    print(f"{gguf_type}: relative RMS logit error {error:.3g}")
    assert error <= BOUND[gguf_type]
    assert (got - logits(through_format(merged, gguf_type), demo_tokenizer)).abs().max().item() <= 1e-5


def test_gguf_tokenizer_and_chat_template_match_the_source(exported, demo_tokenizer):
    out, results = exported  # the tokenizer metadata is written the same way for every type
    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file=gguf_name(results, "q8_0"))
    for text in STRINGS:
        assert tokenizer(text)["input_ids"] == demo_tokenizer(text)["input_ids"], text
    assert tokenizer.decode(demo_tokenizer(STRINGS[1])["input_ids"]) == STRINGS[1]
    assert tokenizer.chat_template == demo_tokenizer.chat_template
    for probe in PROBES:
        assert tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True) == \
            demo_tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)


def test_gguf_metadata_and_tensor_types(exported, demo_tokenizer):
    out, results = exported
    reader = gguf.GGUFReader(results["q8_0"]["gguf"]["path"])
    field = {k: f.contents() for k, f in reader.fields.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")}
    assert field["general.architecture"] == "llama"
    expected = {"context_length": 512, "embedding_length": 64, "block_count": 2, "feed_forward_length": 128,
                "attention.head_count": 4, "attention.head_count_kv": 2, "rope.dimension_count": 16,
                "vocab_size": 49152}
    assert {k: field[f"llama.{k}"] for k in expected} == expected
    assert field["llama.rope.freq_base"] == pytest.approx(100000.0)
    assert field["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "gpt-2"
    ids = {k: field[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "padding", "unknown")}
    assert ids == {"bos": demo_tokenizer.bos_token_id, "eos": demo_tokenizer.eos_token_id,
                   "padding": demo_tokenizer.pad_token_id, "unknown": demo_tokenizer.unk_token_id}
    assert field["tokenizer.ggml.add_bos_token"] is False and field["tokenizer.ggml.add_eos_token"] is False
    types = field["tokenizer.ggml.token_type"]
    assert sum(t == gguf.TokenType.CONTROL for t in types) == len(demo_tokenizer.added_tokens_decoder) == 17
    assert len(reader.fields["tokenizer.ggml.merges"].data) == 48900
    assert field["tokenizer.chat_template"] == demo_tokenizer.chat_template
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in kinds  # tied to token_embd, as llama.cpp expects
    assert kinds["token_embd.weight"] == kinds["blk.1.attn_q.weight"] == "Q8_0"
    assert kinds["blk.0.attn_norm.weight"] == kinds["output_norm.weight"] == "F32"
    assert len(kinds) == 2 + 9 * 2


def test_modelfile_carries_the_chat_template_and_stop_tokens(exported, demo_tokenizer):
    out, results = exported
    text = (out / "Modelfile").read_text()
    source = re.search(r"^FROM \./(\S+)$", text, re.M).group(1)
    assert (out / source).is_file() and source.endswith("-q8_0.gguf")  # the last export written
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)
    assert stops == [demo_tokenizer.eos_token] == ["<|im_end|>"]
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.M | re.S).group(1)
    conversations = [*PROBES, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]
    for messages in conversations:
        assert render(template, ollama_messages(messages)) == \
            demo_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_modelfile_without_a_chatml_template_says_so(demo_tokenizer):
    llama2 = copy.deepcopy(demo_tokenizer)
    llama2.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                            "{% else %}{{ m['content'] }}{% endif %}{% endfor %}")
    text, note = modelfile_text("m.gguf", llama2)
    assert "TEMPLATE" not in text.replace("no TEMPLATE", "") and "differently from ChatML" in note
    assert re.findall(r'^PARAMETER stop "(.*)"$', text, re.M) == [demo_tokenizer.eos_token]
    none = copy.deepcopy(demo_tokenizer)
    none.chat_template = None
    assert detect_chatml(none) == (None, "the tokenizer has no chat template")


def _tokenizer_json(pre, model=None, normalizer=None):
    return {"model": model or {"type": "BPE", "byte_fallback": False}, "normalizer": normalizer, "pre_tokenizer": pre}


def test_pre_tokenizer_names_and_refusals():
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as SPLITS

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    no_regex = dict(byte_level, use_regex=False)
    split = lambda r: {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}  # noqa: E731
    assert pre_tokenizer_name(_tokenizer_json(byte_level)) == "gpt-2"
    digits = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name(_tokenizer_json(digits)) == "smollm"
    for name in ("llama-bpe", "qwen2"):
        seq = {"type": "Sequence", "pretokenizers": [split(SPLITS[name]), no_regex]}
        assert pre_tokenizer_name(_tokenizer_json(seq)) == name
    refusals = {
        "sentencepiece-style": _tokenizer_json(None, {"type": "BPE", "byte_fallback": True}),
        "not a Unigram": _tokenizer_json(None, {"type": "Unigram"}),
        "normalises text": _tokenizer_json(byte_level, normalizer={"type": "NFC"}),
        "does not recognise": _tokenizer_json({"type": "Sequence", "pretokenizers": [split(r"\w+"), no_regex]}),
    }
    for message, tokenizer_json in refusals.items():
        with pytest.raises(UserError, match=message):
            pre_tokenizer_name(tokenizer_json)


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe", "qwen2"])
def test_byte_level_tokenizers_round_trip(pre, tmp_path, small_tokenizer):
    from tokenizers import Regex, pre_tokenizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as SPLITS

    tokenizer = copy.deepcopy(small_tokenizer)
    if pre != "gpt-2":
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    model = _tiny("llama", vocab_size=len(tokenizer))
    summary = write_gguf(model, tokenizer, tmp_path / "m.gguf", "f16", "m", progress=False)
    assert summary["pre_tokenizer"] == pre
    back = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    for text in STRINGS:
        assert back(text)["input_ids"] == tokenizer(text)["input_ids"], text


def _tiny(model_type, vocab_size):
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    shape = dict(TINY_LLAMA, vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, rope_theta=10000.0)
    torch.manual_seed(0)
    if model_type == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=True))
    if model_type == "mistral":  # untied output layer: writes output.weight
        return MistralForCausalLM(MistralConfig(**shape, sliding_window=None, tie_word_embeddings=False))
    model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True, use_sliding_window=False))
    with torch.no_grad():  # the q/k/v biases start at zero: make them count
        for name, param in model.named_parameters():
            if name.endswith("proj.bias"):
                param.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("model_type", ["mistral", "qwen2"])
def test_mistral_and_qwen2_round_trip(model_type, tmp_path, small_tokenizer):
    model = _tiny(model_type, len(small_tokenizer)).eval()
    write_gguf(model, small_tokenizer, tmp_path / "m.gguf", "f16", "m", progress=False)
    back = load_gguf_model(tmp_path, "m.gguf")
    reference, got = logits(model, small_tokenizer), logits(back, small_tokenizer)
    assert relative_error(got, reference) <= BOUND["f16"]
    assert (got - logits(through_format(model, "f16"), small_tokenizer)).abs().max().item() <= 1e-5
    names = {t.name for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert ("output.weight" in names) == (model_type == "mistral")
    assert ("blk.0.attn_q.bias" in names) == (model_type == "qwen2")


def test_architectures_not_covered_are_refused_with_the_reason():
    from transformers import GPT2Config, LlamaConfig, MistralConfig

    with pytest.raises(UserError, match="not 'gpt2'"):
        gguf_arch(GPT2Config())
    llama31 = LlamaConfig(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 8192})
    with pytest.raises(UserError, match="rope_type 'llama3'"):
        gguf_arch(llama31)
    with pytest.raises(UserError, match="sliding window of 4096"):
        gguf_arch(MistralConfig(sliding_window=4096, max_position_embeddings=32768))
    assert gguf_arch(LlamaConfig()).name == "llama"


def test_export_cli_on_a_trained_lora_run(tmp_path, capsys):
    """A real run folder: tiny recipe with LoRA for 2 steps (random-init base rebuilt from the seed);
    export and eval run as the CLI, in this process."""
    from peft import PeftModel

    from orpo_dist.eval.models import load_run_recipe
    from orpo_dist.model import load_model, load_tokenizer

    run = tmp_path / "run"
    trained = run_cli("train", "--config", TINY_RECIPE, "--output_dir", run, "--use_peft", "true",
                      "--max_steps", "2", "--save_strategy", "no")
    assert trained.returncode == 0, trained.stderr[-3000:]
    status, said, err = run_case(["export", run, "--merge", "--gguf", "q8_0"], capsys)
    assert status == 0, err[-3000:]
    out = run / "export"
    assert f"exported to {out}" in said
    for path in (out / "merged", out / "run-q8_0.gguf", out / "Modelfile"):
        assert str(path) in said and path.exists()
    assert "GGUF q8_0" in err  # the progress bar
    assert [p.name for p in out.glob(".*")] == [".orpo-dist-export.json"]  # no temporary leftovers, only the record
    recipe = load_run_recipe(run)
    tokenizer = load_tokenizer(recipe.model, recipe.training)
    reference = logits(PeftModel.from_pretrained(load_model(recipe.model, recipe.training), run), tokenizer)
    assert (logits(AutoModelForCausalLM.from_pretrained(out / "merged"), tokenizer) - reference).abs().max() <= 1e-5

    # `orpo-dist eval` scores each exported form against the run's base, as it scores the run.
    scores = {}
    for name, target in (("run", run), ("merged", out / "merged"), ("gguf", out / "run-q8_0.gguf")):
        status, _, err = run_case(["eval", target, "--no-generate", "--max-pairs", "6"], capsys)
        assert status == 0, (name, err[-3000:])
        folder = target if target.is_dir() else target.parent
        scores[name] = json.loads((folder / "eval.json").read_text())
        assert (folder / "eval.md").is_file() and (folder / "plots" / "eval-gap-histogram.png").is_file()
    assert scores["gguf"]["kind"] == "gguf" and scores["merged"]["kind"] == "folder"
    for name in ("merged", "gguf"):
        assert scores[name]["base"] == scores["run"]["base"]  # the same base, found through the run
    assert scores["merged"]["trained"]["chosen_logp"] == pytest.approx(scores["run"]["trained"]["chosen_logp"], abs=1e-4)
    assert scores["gguf"]["trained"]["chosen_logp"] == pytest.approx(scores["run"]["trained"]["chosen_logp"], rel=0.05)


def test_cli_errors_are_one_clear_line(tmp_path, lora_run, tiny_model_dir, capsys):
    """`orpo-dist export` in this process (its own entry point and error handling)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from orpo_dist.cli import main

    def _cli_error(*args):
        status = main(["export", *map(str, args)])
        err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err, err[-2000:]
        errors = [line for line in err.splitlines() if line.startswith("orpo-dist export: error:")]
        assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err[-2000:]
        return errors[0]

    assert "not an orpo-dist run folder" in _cli_error(tmp_path, "--merge")
    assert "missing does not exist" in _cli_error(tmp_path / "missing", "--merge")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    write_recipe(unfinished, model_name_or_path=str(tiny_model_dir))
    assert "holds no saved model or adapter" in _cli_error(unfinished, "--gguf", "f16")
    assert "unknown --gguf type 'q4_k'" in _cli_error(lora_run, "--gguf", "q4_k")
    assert "nothing to export" in _cli_error(lora_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "cannot write the export to" in _cli_error(lora_run, "--merge", "--out", blocker / "out")
    gpt2_run = tmp_path / "gpt2-run"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=49152)).save_pretrained(gpt2_run)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(gpt2_run)
    write_recipe(gpt2_run, model_name_or_path=str(gpt2_run))
    message = _cli_error(gpt2_run, "--gguf", "f16")
    assert "not 'gpt2'" in message and "--merge" in message
    assert not (gpt2_run / "export" / "Modelfile").exists()


def test_a_run_on_a_gguf_base_merges_and_saves(tmp_path, small_tokenizer):
    """GGUF in, LoRA, merged HF folder out: transformers refuses to save a GGUF-loaded model as is."""
    from peft import PeftModel

    base = _tiny("llama", len(small_tokenizer)).eval()
    write_gguf(base, small_tokenizer, tmp_path / "base.gguf", "f16", "base", progress=False)
    run = tmp_path / "run"
    adapter = random_adapter(load_gguf_model(tmp_path, "base.gguf"))
    adapter.save_pretrained(run)
    small_tokenizer.save_pretrained(run)
    write_recipe(run, model_name_or_path=str(tmp_path), gguf_file="base.gguf", use_peft=True, lora_r=4, lora_alpha=8)
    export_run(run, merge=True, progress=False)
    merged = AutoModelForCausalLM.from_pretrained(run / "export" / "merged")
    reference = PeftModel.from_pretrained(load_gguf_model(tmp_path, "base.gguf"), run)
    assert (logits(merged, small_tokenizer) - logits(reference, small_tokenizer)).abs().max().item() <= 1e-5

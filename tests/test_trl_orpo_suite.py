"""TRL's own ORPO test file, run against orpo-dist's trainer.

A port of huggingface/trl's tests/experimental/test_orpo_trainer.py: every test of its newest
version on main (2026-07-16, 13 tests) and the five more an open branch added (0c26e90: model
dtype, evaluation during training, gradient checkpointing, model tags with and without PEFT), 18
in all, each with its assertions kept. Each test that trains runs with `orpo_step: auto` (the fast
forward where it is exact) and `stock` (the padded forward); the ones that only build a trainer
run once. What changes, and why:

- Offline: TRL's hub models become tiny models built from a config with the demo model's tokenizer
  (a 2-layer Qwen2; a Llama subclass that ships its own Python code, as TRL's
  tiny-RemoteForCausalLM does). TRL's "zen" preference data is rebuilt in memory the way TRL's
  generator script builds it: the Zen of Python (from the standard library's `this`), each line's
  opening as the prompt, its true ending as the chosen answer, a wrong ending as the rejected one,
  in TRL's four preference configs, 17 training and 2 test rows.
- Configs are orpo-dist's OrpoConfig (TRL's fields and defaults; bf16 left off on this CPU).
- The encoder-decoder case (T5): orpo-dist trains decoder-only models and refuses an
  encoder-decoder one in one line (README); that test asserts the refusal instead of training.
"""

from __future__ import annotations

import codecs
import this

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from orpo_dist.errors import UserError
from orpo_dist.orpo import OrpoConfig, OrpoTrainer

REMOTE_CODE = '''
from transformers import LlamaConfig, LlamaForCausalLM


class RemoteConfig(LlamaConfig):
    model_type = "remote"


class RemoteForCausalLM(LlamaForCausalLM):
    config_class = RemoteConfig
'''
TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=256)


# ---------------------------------------------------------------- the zen data

def zen_lines() -> list[str]:
    text = codecs.decode(this.s, "rot13")
    return [line for line in text.splitlines()[2:] if line.strip()]  # after the title and its blank line


def _split(line: str) -> tuple[str, str]:
    words = line.split(" ")
    cut = max(1, len(words) // 2)
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def zen(config_name: str) -> DatasetDict:
    """TRL's zen preference configs: standard or conversational, explicit or implicit prompt."""
    halves = [_split(line) for line in zen_lines()]
    rows = []
    for i, (prompt, chosen) in enumerate(halves):
        rejected = halves[(i + 7) % len(halves)][1]  # another line's ending: grammatical, wrong
        if config_name.startswith("conversational"):
            prompt_turn = [{"role": "user", "content": prompt}]
            row = {"prompt": prompt_turn, "chosen": [{"role": "assistant", "content": chosen.strip()}],
                   "rejected": [{"role": "assistant", "content": rejected.strip()}]}
            if "implicit" in config_name:
                row = {"chosen": prompt_turn + row["chosen"], "rejected": prompt_turn + row["rejected"]}
        else:
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            if "implicit" in config_name:
                row = {"chosen": prompt + chosen, "rejected": prompt + rejected}
        rows.append(row)
    test_size = max(1, round(len(rows) * 0.1))  # TRL: train_test_split(test_size=0.1, shuffle=False)
    return DatasetDict({"train": Dataset.from_list(rows[:-test_size]), "test": Dataset.from_list(rows[-test_size:])})


def test_zen_data_has_trls_shape():
    data = zen("standard_preference")
    assert (len(data["train"]), len(data["test"])) == (17, 2)
    assert data["train"][0] == {"prompt": "Beautiful is", "chosen": " better than ugly.",
                                "rejected": data["train"][7]["chosen"]}
    assert set(zen("conversational_implicit_prompt_preference")["train"].column_names) == {"chosen", "rejected"}


# ---------------------------------------------------------------- the models

@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, demo_model_dir, demo_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(demo_tokenizer), bos_token_id=demo_tokenizer.bos_token_id,
                         eos_token_id=demo_tokenizer.eos_token_id, pad_token_id=demo_tokenizer.pad_token_id, **TINY)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    Qwen2ForCausalLM(config).save_pretrained(out)
    demo_tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def remote_model_dir(tmp_path_factory, tiny_qwen_dir, demo_tokenizer):
    """A model whose folder brings its own Python code (config and model classes, auto_map)."""
    import json
    import sys

    out = tmp_path_factory.mktemp("tiny-remote")
    (out / "modeling_remote.py").write_text(REMOTE_CODE)
    sys.path.insert(0, str(out))
    try:
        from modeling_remote import RemoteConfig, RemoteForCausalLM
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("modeling_remote", None)
    torch.manual_seed(0)
    config = RemoteConfig(vocab_size=len(demo_tokenizer), bos_token_id=demo_tokenizer.bos_token_id,
                          eos_token_id=demo_tokenizer.eos_token_id, **TINY)
    RemoteForCausalLM(config).save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())
    saved["auto_map"] = {"AutoConfig": "modeling_remote.RemoteConfig",
                         "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM"}
    (out / "config.json").write_text(json.dumps(saved))
    demo_tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(params=["auto", "stock"])
def orpo_step(request):
    return request.param


ONCE = pytest.mark.parametrize("orpo_step", ["auto"])  # builds a trainer only: the forward does not matter


@pytest.fixture
def suite(tmp_path, tiny_qwen_dir, orpo_step):
    """TRL's setup_method: the model, its tokenizer (pad = eos) and a config maker."""
    class Suite:
        model_id = tiny_qwen_dir
        tmp_dir = str(tmp_path)
        model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_dir)
        tokenizer.pad_token = tokenizer.eos_token

        @staticmethod
        def config(**fields):
            return OrpoConfig(orpo_step=orpo_step, **fields)

    return Suite


# ---------------------------------------------------------------- TRL's tests

@ONCE
def test_trust_remote_code(suite, remote_model_dir):
    dataset = zen("standard_preference")["train"]
    tokenizer = AutoTokenizer.from_pretrained(remote_model_dir, trust_remote_code=True)

    with pytest.raises(ValueError, match="custom code"):
        OrpoTrainer(model=remote_model_dir, args=suite.config(output_dir=suite.tmp_dir, report_to="none"),
                    processing_class=tokenizer, train_dataset=dataset)

    trainer = OrpoTrainer(model=remote_model_dir,
                          args=suite.config(output_dir=suite.tmp_dir, report_to="none", trust_remote_code=True),
                          processing_class=tokenizer, train_dataset=dataset)
    assert type(trainer.model).__name__ == "RemoteForCausalLM"
    assert trainer.forward.name == "stock"  # not an architecture the fast forward knows: the padded one


@pytest.mark.parametrize("name, config_name", [
    ("qwen", "standard_preference"),
    ("t5", "standard_implicit_prompt_preference"),
    ("qwen", "conversational_preference"),
])
def test_orpo_trainer(suite, name, config_name):
    if name == "t5":
        # Not applicable: orpo-dist trains decoder-only models. It refuses an encoder-decoder one
        # in one line, at the config (TRL's is_encoder_decoder) and at the model.
        from transformers import T5Config, T5ForConditionalGeneration

        with pytest.raises(UserError, match="encoder-decoder models .* are not supported"):
            suite.config(output_dir=suite.tmp_dir, report_to="none", is_encoder_decoder=True)
        t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(suite.tokenizer), d_model=16, d_ff=32, num_layers=1,
                                                 num_heads=2, d_kv=8, decoder_start_token_id=0))
        with pytest.raises(UserError, match="T5ForConditionalGeneration: .*decoder-only"):
            OrpoTrainer(model=t5, args=suite.config(output_dir=suite.tmp_dir, report_to="none"),
                        processing_class=suite.tokenizer, train_dataset=zen(config_name)["train"])
        return
    training_args = suite.config(
        output_dir=suite.tmp_dir,
        per_device_train_batch_size=2,
        max_steps=3,
        remove_unused_columns=False,
        gradient_accumulation_steps=1,
        learning_rate=9e-1,
        eval_strategy="steps",
        beta=0.1,
        report_to="none",
    )
    dataset = zen(config_name)
    trainer = OrpoTrainer(model=suite.model, args=training_args, processing_class=suite.tokenizer,
                          train_dataset=dataset["train"], eval_dataset=dataset["test"])

    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, param in previous_trainable_params.items():
        new_param = trainer.model.get_parameter(n)
        if param.sum() != 0:  # ignore 0 biases
            assert not torch.equal(param, new_param)


@ONCE
@pytest.mark.parametrize("eval_dataset_type", ["dataset", "dataset_dict", "none"])
def test_init_with_eval_dataset(suite, eval_dataset_type):
    train_dataset = zen("standard_preference")["train"]
    if eval_dataset_type == "none":
        eval_dataset = None
    else:
        eval_split = zen("standard_preference")["test"]
        eval_dataset = eval_split if eval_dataset_type == "dataset" else DatasetDict({"data1": eval_split,
                                                                                     "data2": eval_split})
    trainer = OrpoTrainer(model=suite.model, args=suite.config(output_dir=suite.tmp_dir, report_to="none"),
                          processing_class=suite.tokenizer, train_dataset=train_dataset, eval_dataset=eval_dataset)
    if eval_dataset_type == "none":
        assert trainer.eval_dataset is None
    elif isinstance(trainer.eval_dataset, dict):
        assert set(trainer.eval_dataset.keys()) == {"data1", "data2"}
        assert "chosen_input_ids" in next(iter(trainer.eval_dataset["data1"]))
        assert "chosen_input_ids" in next(iter(trainer.eval_dataset["data2"]))
    else:
        assert "chosen_input_ids" in next(iter(trainer.eval_dataset))


def test_orpo_trainer_processing_class_autoloaded(suite):
    training_args = suite.config(output_dir=suite.tmp_dir, per_device_train_batch_size=2, max_steps=3,
                                 remove_unused_columns=False, beta=0.1, report_to="none")
    trainer = OrpoTrainer(model=suite.model, args=training_args, train_dataset=zen("standard_preference")["train"])
    assert trainer.processing_class is not None
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None


@pytest.mark.parametrize("config_name", [
    "standard_preference",
    "standard_implicit_prompt_preference",
    "conversational_preference",
    "conversational_implicit_prompt_preference",
])
def test_orpo_trainer_with_lora(suite, config_name):
    from peft import LoraConfig

    lora_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM")
    training_args = suite.config(output_dir=suite.tmp_dir, per_device_train_batch_size=2, max_steps=3,
                                 remove_unused_columns=False, gradient_accumulation_steps=4, learning_rate=9e-1,
                                 eval_strategy="steps", beta=0.1, report_to="none")
    dataset = zen(config_name)
    trainer = OrpoTrainer(model=suite.model, args=training_args, processing_class=suite.tokenizer,
                          train_dataset=dataset["train"], eval_dataset=dataset["test"], peft_config=lora_config)

    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, param in previous_trainable_params.items():
        if "lora" in n:
            new_param = trainer.model.get_parameter(n)
            if param.sum() != 0:  # ignore 0 biases
                assert not torch.equal(param, new_param)


def test_compute_metrics(suite):
    model = AutoModelForCausalLM.from_pretrained(suite.model_id, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(suite.model_id)
    tokenizer.pad_token = tokenizer.eos_token
    dataset = zen("standard_preference")

    def dummy_compute_metrics(*args, **kwargs):
        return {"test": 0.0}

    training_args = suite.config(output_dir=suite.tmp_dir, remove_unused_columns=False, per_device_train_batch_size=2,
                                 do_eval=True, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=2,
                                 report_to="none")
    trainer = OrpoTrainer(model=model, args=training_args, processing_class=tokenizer, train_dataset=dataset["train"],
                          eval_dataset=dataset["test"], compute_metrics=dummy_compute_metrics)
    trainer.train()
    assert trainer.state.log_history[-2]["eval_test"] == 0.0


# ---------------------------------------------------------------- from TRL's branch 0c26e90

def test_train_model_dtype(suite):
    training_args = suite.config(output_dir=suite.tmp_dir, model_init_kwargs={"dtype": torch.float16},
                                 learning_rate=0.1, report_to="none")
    trainer = OrpoTrainer(model=suite.model_id, args=training_args, train_dataset=zen("standard_preference")["train"])

    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, param in previous_trainable_params.items():
        if "layernorm" in n:  # can be unchanged in CI; ignore (matches DPO's test)
            continue
        new_param = trainer.model.get_parameter(n)
        assert new_param.dtype == torch.float16
        assert not torch.equal(param, new_param), f"Parameter {n} has not changed."


def test_train_with_eval(suite):
    dataset = zen("standard_preference")
    training_args = suite.config(output_dir=suite.tmp_dir, eval_strategy="steps", eval_steps=3, report_to="none")
    trainer = OrpoTrainer(model=suite.model_id, args=training_args, train_dataset=dataset["train"],
                          eval_dataset=dataset["test"])
    trainer.train()
    assert trainer.state.log_history[0]["eval_loss"] is not None


def test_train_with_gradient_checkpointing(suite):
    training_args = suite.config(output_dir=suite.tmp_dir, learning_rate=0.1, gradient_checkpointing=True,
                                 report_to="none")
    trainer = OrpoTrainer(model=suite.model_id, args=training_args, train_dataset=zen("standard_preference")["train"])

    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, param in previous_trainable_params.items():
        new_param = trainer.model.get_parameter(n)
        assert not torch.equal(param, new_param), f"Parameter {n} has not changed."


@ONCE
def test_tag_added(suite):
    trainer = OrpoTrainer(model=suite.model_id, args=suite.config(output_dir=suite.tmp_dir, report_to="none"),
                          train_dataset=zen("standard_preference")["train"])
    for tag in ["orpo", "trl"]:
        assert tag in trainer.model.model_tags


@ONCE
def test_tag_added_peft(suite):
    from peft import LoraConfig

    trainer = OrpoTrainer(model=suite.model_id, args=suite.config(output_dir=suite.tmp_dir, report_to="none"),
                          train_dataset=zen("standard_preference")["train"], peft_config=LoraConfig())
    for tag in ["orpo", "trl"]:
        assert tag in trainer.model.model_tags

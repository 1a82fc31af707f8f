"""orpo_dist.data: every input format and file type becomes prompt/chosen/rejected strings that
TRL's ORPOTrainer tokenizes without complaint."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import types

import pytest

from orpo_dist.data import main_process_log

from .helpers import prepare, write_jsonl

END = "<|im_end|>\n"  # SmolLM2's end of turn, as rendered after an assistant message

STANDARD = [
    {"prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": f"It is {2 * i + 1}.", "id": i}
    for i in range(10)
]


def prompt_text(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# ---------------------------------------------------------------- formats


def test_standard_rendered_with_chat_template(tmp_path, demo_tokenizer):
    data = prepare(write_jsonl(tmp_path / "d.jsonl", STANDARD), demo_tokenizer)
    assert data.train.column_names == ["prompt", "chosen", "rejected"]  # `id` dropped
    assert len(data.train) == 10 and data.eval is None
    row = data.train[3]
    assert row["prompt"] == prompt_text(demo_tokenizer, [user("What is 3 + 3?")])
    assert row["prompt"].endswith("<|im_start|>assistant\n")
    assert row["chosen"] == "It is 6." + END and row["rejected"] == "It is 7." + END
    assert data.report.format == "standard" and data.report.rendering == "chat template"


def test_standard_plain_text_without_template(tmp_path, demo_tokenizer):
    data = prepare(write_jsonl(tmp_path / "d.jsonl", STANDARD), demo_tokenizer, apply_chat_template=False)
    assert data.train[3] == {"prompt": "What is 3 + 3?", "chosen": "It is 6.", "rejected": "It is 7."}
    assert data.report.rendering == "plain text"


def test_conversational_with_explicit_prompt(tmp_path, demo_tokenizer):
    rows = [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, user("Capital of France?")],
            "chosen": [assistant("Paris.")],
            "rejected": [assistant("Lyon.")],
        }
    ] * 3
    data = prepare(write_jsonl(tmp_path / "c.jsonl", rows), demo_tokenizer)
    assert data.report.format == "conversational"
    assert data.train[0] == {
        "prompt": prompt_text(demo_tokenizer, rows[0]["prompt"]),
        "chosen": "Paris." + END,
        "rejected": "Lyon." + END,
    }
    assert "Be brief." in data.train[0]["prompt"] and "SmolLM" not in data.train[0]["prompt"]


def test_conversational_whole_conversations_share_a_prefix(tmp_path, demo_tokenizer):
    shared = [user("Hi"), assistant("Hello! How can I help?"), user("Name a colour.")]
    rows = [{"chosen": shared + [assistant("Blue.")], "rejected": shared + [assistant("Table.")], "category": "x"}]
    data = prepare(write_jsonl(tmp_path / "c.jsonl", rows), demo_tokenizer)
    assert data.report.format == "conversational"
    assert data.train[0] == {
        "prompt": prompt_text(demo_tokenizer, shared),
        "chosen": "Blue." + END,
        "rejected": "Table." + END,
    }
    plain = prepare(tmp_path / "c.jsonl", demo_tokenizer, apply_chat_template=False).train[0]
    assert plain == {
        "prompt": "User: Hi\n\nAssistant: Hello! How can I help?\n\nUser: Name a colour.\n\nAssistant:",
        "chosen": " Blue.",
        "rejected": " Table.",
    }


def test_conversational_string_prompt_and_message_answers(tmp_path, demo_tokenizer):
    rows = [{"prompt": "Say hi", "chosen": [assistant("Hi!")], "rejected": [assistant("No.")]}]
    data = prepare(write_jsonl(tmp_path / "c.jsonl", rows), demo_tokenizer)
    assert data.train[0]["prompt"] == prompt_text(demo_tokenizer, [user("Say hi")])
    assert data.train[0]["chosen"] == "Hi!" + END


HH_ROW = {
    "chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: What kind?\n\nHuman: Sourdough.\n\nAssistant: Start with a starter.",
    "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: What kind?\n\nHuman: Sourdough.\n\nAssistant: Buy some.",
}


def test_hh_transcripts_become_chat_turns(tmp_path, demo_tokenizer):
    data = prepare(write_jsonl(tmp_path / "hh.jsonl.gz", [HH_ROW] * 2, gzip.open), demo_tokenizer)
    assert data.report.format == "hh"
    turns = [user("How do I bake bread?"), assistant("What kind?"), user("Sourdough.")]
    assert data.train[0] == {
        "prompt": prompt_text(demo_tokenizer, turns),
        "chosen": "Start with a starter." + END,
        "rejected": "Buy some." + END,
    }
    plain = prepare(tmp_path / "hh.jsonl.gz", demo_tokenizer, apply_chat_template=False).train[0]
    assert plain["prompt"].endswith("User: Sourdough.\n\nAssistant:") and plain["chosen"] == " Start with a starter."


def test_hh_shared_double_turn_is_merged_not_dropped(tmp_path, demo_tokenizer):
    # Seen in harmless-base: two Assistant turns in a row in the part both transcripts share.
    prefix = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nAssistant: Anything else?\n\nHuman: A joke."
    row = {"chosen": prefix + "\n\nAssistant: Knock knock.", "rejected": prefix + "\n\nAssistant: No."}
    data = prepare(write_jsonl(tmp_path / "hh.jsonl", [row]), demo_tokenizer)
    assert not data.report.bad_rows
    expected = [user("Hi"), assistant("Hello.\n\nAnything else?"), user("A joke.")]
    assert data.train[0]["prompt"] == prompt_text(demo_tokenizer, expected)


def test_sharegpt(tmp_path, demo_tokenizer):
    conversations = [
        {"from": "system", "value": "You are terse."},
        {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "And 3+3?"},
    ]
    rows = [
        {"conversations": conversations, "chosen": {"from": "gpt", "value": "6"}, "rejected": {"from": "gpt", "value": "7"}},
        {"conversations": conversations, "chosen": "six", "rejected": "seven"},
    ]
    data = prepare(write_jsonl(tmp_path / "s.jsonl", rows), demo_tokenizer)
    assert data.report.format == "sharegpt"
    messages = [
        {"role": "system", "content": "You are terse."},
        user("2+2?"),
        assistant("4"),
        user("And 3+3?"),
    ]
    assert data.train[0] == {"prompt": prompt_text(demo_tokenizer, messages), "chosen": "6" + END, "rejected": "7" + END}
    assert data.train[1]["chosen"] == "six" + END


@pytest.mark.parametrize("mapping", ["prompt=question,chosen=response_j,rejected=response_k", None])
def test_column_mapping(tmp_path, demo_tokenizer, mapping):
    rows = [{"question": r["prompt"], "response_j": r["chosen"], "response_k": r["rejected"]} for r in STANDARD]
    path = write_jsonl(tmp_path / "se.jsonl", rows)
    columns = mapping or {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}  # YAML form
    data = prepare(path, demo_tokenizer, dataset_columns=columns, apply_chat_template=False)
    assert data.train[0] == {k: STANDARD[0][k] for k in ("prompt", "chosen", "rejected")}


def test_mapping_wins_over_a_column_with_the_field_name(tmp_path, demo_tokenizer):
    rows = [{"prompt": "p", "chosen": "old", "better": "good", "rejected": "bad"}]
    data = prepare(write_jsonl(tmp_path / "m.jsonl", rows), demo_tokenizer, dataset_columns="chosen=better",
                   apply_chat_template=False)
    assert data.train[0] == {"prompt": "p", "chosen": "good", "rejected": "bad"}


def test_forced_format(tmp_path, demo_tokenizer):
    # Transcripts that also carry a prompt column: auto sees standard strings; hh is forced.
    rows = [dict(HH_ROW, prompt="ignored")]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    data = prepare(path, demo_tokenizer, dataset_format="hh", apply_chat_template=False)
    assert data.report.format == "hh" and data.train[0]["chosen"] == " Start with a starter."
    assert prepare(path, demo_tokenizer).report.format == "standard"


def test_no_tokenizer_means_plain_text_and_no_token_checks(tmp_path):
    data = prepare(write_jsonl(tmp_path / "d.jsonl", STANDARD), None, max_length=4)
    assert len(data.train) == 10 and data.train[0]["prompt"] == "What is 0 + 0?"


# ---------------------------------------------------------------- file types


def _write_all_kinds(tmp_path):
    """The STANDARD rows in every supported container; returns {kind: dataset_name}."""
    import datasets

    out = {}
    out["jsonl"] = write_jsonl(tmp_path / "a.jsonl", STANDARD)
    out["jsonl.gz"] = write_jsonl(tmp_path / "a.jsonl.gz", STANDARD, gzip.open)
    (tmp_path / "a.json").write_text(json.dumps(STANDARD, indent=1))
    out["json array"] = tmp_path / "a.json"
    out["json lines in .json.gz"] = write_jsonl(tmp_path / "b.json.gz", STANDARD, gzip.open)
    (tmp_path / "columns.json").write_text(json.dumps({k: [r[k] for r in STANDARD] for k in STANDARD[0]}))
    out["json columns"] = tmp_path / "columns.json"
    ds = datasets.Dataset.from_list(STANDARD)
    ds.to_parquet(str(tmp_path / "a.parquet"))
    out["parquet"] = tmp_path / "a.parquet"
    with open(tmp_path / "a.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(STANDARD[0]))
        writer.writeheader()
        writer.writerows(STANDARD)
    out["csv"] = tmp_path / "a.csv"
    ds.save_to_disk(str(tmp_path / "disk"))
    out["save_to_disk Dataset"] = tmp_path / "disk"
    folder = tmp_path / "shards" / "data"
    folder.mkdir(parents=True)
    ds.select(range(4)).to_parquet(str(folder / "train-00000-of-00002.parquet"))
    ds.select(range(4, 10)).to_parquet(str(folder / "train-00001-of-00002.parquet"))
    out["folder of parquet shards"] = tmp_path / "shards"
    plain = tmp_path / "plainfolder"
    plain.mkdir()
    write_jsonl(plain / "part_a.jsonl", STANDARD[:5])
    write_jsonl(plain / "part_b.jsonl", STANDARD[5:])
    out["folder without split names"] = plain
    return out


def test_every_file_type_loads_the_same_rows(tmp_path, demo_tokenizer):
    expected = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in STANDARD]
    for kind, path in _write_all_kinds(tmp_path).items():
        data = prepare(path, demo_tokenizer, apply_chat_template=False)
        assert data.train.to_list() == expected, kind
        assert data.report.splits["train"].total == 10, kind


def test_test_split_from_a_folder_and_from_save_to_disk(tmp_path, demo_tokenizer):
    import datasets

    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", STANDARD[:7])
    write_jsonl(folder / "test.jsonl", STANDARD[7:])
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(STANDARD[:7]), "test": datasets.Dataset.from_list(STANDARD[7:])}
    )
    dd.save_to_disk(str(tmp_path / "dict"))
    for path in (folder, tmp_path / "dict"):
        data = prepare(path, demo_tokenizer, eval_split_size=0.5, apply_chat_template=False)
        assert len(data.train) == 7 and len(data.eval) == 3  # the test split wins over eval_split_size
        assert data.eval[0]["prompt"] == STANDARD[7]["prompt"]


def test_hub_datasets_go_through_load_dataset(tmp_path, demo_tokenizer, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None):
        calls.append((name, config))
        return datasets.DatasetDict({"train": datasets.Dataset.from_list(STANDARD)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = prepare("someone/pairs", demo_tokenizer, dataset_config="v2", apply_chat_template=False)
    assert calls == [("someone/pairs", "v2")] and len(data.train) == 10


# ---------------------------------------------------------------- splits and caps


def test_held_out_split_is_seeded_and_disjoint(tmp_path, demo_tokenizer):
    rows = [dict(r, prompt=f"q{i}") for i, r in enumerate(STANDARD * 10)]  # 100 distinct prompts
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    a = prepare(path, None, seed=1, eval_split_size=0.1)
    b = prepare(path, None, seed=1, eval_split_size=0.1)
    c = prepare(path, None, seed=2, eval_split_size=0.1)
    assert len(a.train) == 90 and len(a.eval) == 10
    assert a.eval.to_list() == b.eval.to_list() and a.eval.to_list() != c.eval.to_list()
    assert not set(a.train["prompt"]) & set(a.eval["prompt"])
    assert any("10 eval pairs" in line for line in a.log)
    assert prepare(path, None, eval_split_size=0.0).eval is None


def test_sample_caps(tmp_path):
    rows = [dict(r, prompt=f"q{i}") for i, r in enumerate(STANDARD * 10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = prepare(path, None, seed=3, eval_split_size=0.2, max_train_samples=15, max_eval_samples=4)
    assert len(data.train) == 15 and len(data.eval) == 4
    again = prepare(path, None, seed=3, eval_split_size=0.2, max_train_samples=15, max_eval_samples=4)
    assert data.train.to_list() == again.train.to_list()
    assert prepare(path, None, seed=4, max_train_samples=15).train.to_list() != prepare(
        path, None, seed=3, max_train_samples=15
    ).train.to_list()


def test_one_row_gets_no_eval_set(tmp_path):
    data = prepare(write_jsonl(tmp_path / "d.jsonl", STANDARD[:1]), None, eval_split_size=0.5)
    assert len(data.train) == 1 and data.eval is None


def test_main_process_log(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    main_process_log("hello")
    monkeypatch.setenv("RANK", "1")
    main_process_log("not me")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    main_process_log("me again")
    assert capsys.readouterr().out == "hello\nme again\n"


# ---------------------------------------------------------------- the trainer accepts every row


def _tokenize_all(dataset, tokenizer, max_length):
    """Run TRL's own ORPOTrainer.tokenize_row, the reference, on every row (without building a model)."""
    from trl.experimental.orpo import ORPOTrainer

    shim = types.SimpleNamespace(is_encoder_decoder=False, processing_class=tokenizer, max_length=max_length)
    shim.build_tokenized_answer = functools.partial(ORPOTrainer.build_tokenized_answer, shim)
    return [ORPOTrainer.tokenize_row(shim, row) for row in dataset]


@pytest.mark.parametrize("template", [True, False])
def test_orpo_tokenize_row_accepts_every_prepared_row(tmp_path, demo_tokenizer, template):
    tricky = [
        {"prompt": "Ends with a space ", "chosen": " leading space", "rejected": "no space"},
        {"prompt": "Ends with newline\n", "chosen": "\nnewline first", "rejected": "\n\nmore newlines"},
        {"prompt": "Unicode ✓ café", "chosen": "naïve 🙂", "rejected": "ok"},
        {"prompt": "Special token <|im_end|> inside", "chosen": "<|im_start|>weird", "rejected": "fine"},
        {"prompt": "A long question. " * 60, "chosen": "Long answer. " * 80, "rejected": "Short."},
    ]
    rows = STANDARD + tricky
    path = write_jsonl(tmp_path / "t.jsonl", rows + [HH_ROW])  # the HH row is bad in standard format
    max_length = 128
    data = prepare(path, demo_tokenizer, max_length=max_length, apply_chat_template=template)
    split = data.report.splits["train"]
    outputs = _tokenize_all(data.train, demo_tokenizer, max_length)
    assert len(outputs) == len(data.train) == split.good == len(rows) - 1
    assert [b.reason for b in data.report.bad_rows] == ["prompt too long", "missing value"]
    for out, prompt_len, chosen_len in zip(outputs, split.prompt_tokens, split.chosen_tokens):
        # our counts are the trainer's (a prompt token may merge into one answer: the longer side counts)
        chosen_side, rejected_side = out["chosen_labels"].count(-100), out["rejected_labels"].count(-100)
        assert max(chosen_side, rejected_side) == prompt_len
        assert len(out["chosen_input_ids"]) == min(max_length, chosen_side + chosen_len)
        assert any(label != -100 for label in out["chosen_labels"])  # something to learn
        assert any(label != -100 for label in out["rejected_labels"])


def test_demo_alias_reads_the_bundled_folder(tmp_path, monkeypatch):
    from orpo_dist.data import sources

    folder = tmp_path / "demo_data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", STANDARD[:6])
    write_jsonl(folder / "heldout.jsonl", STANDARD[6:])
    (folder / "README.md").write_text("not data")
    monkeypatch.setattr(sources, "DEMO_DATA_DIR", folder)
    data = prepare("orpo-dist-demo", None, dataset_test_split="heldout")
    assert len(data.train) == 6 and len(data.eval) == 4
    monkeypatch.setattr(sources, "DEMO_DATA_DIR", tmp_path / "nothing")
    with pytest.raises(Exception, match="bundled demo set is missing"):
        prepare("orpo-dist-demo", None)


def test_a_real_orpo_trainer_trains_on_prepared_hh_rows(tmp_path, tiny_model_dir, demo_tokenizer):
    """End to end on the trainer itself: bad rows mixed in, nothing reaches it that it rejects."""
    from transformers import AutoModelForCausalLM

    from orpo_dist.orpo import OrpoConfig, OrpoTrainer

    bad_rows = [
        {"chosen": HH_ROW["chosen"], "rejected": "\n\nHuman: Other?\n\nAssistant: x"},
        {"chosen": HH_ROW["chosen"] + "\n\nHuman: more", "rejected": HH_ROW["rejected"]},
        "{broken",
    ]
    lines = [json.dumps(HH_ROW)] * 6 + [json.dumps(r) if isinstance(r, dict) else r for r in bad_rows]
    (tmp_path / "hh.jsonl").write_text("\n".join(lines))
    data = prepare(tmp_path / "hh.jsonl", demo_tokenizer, max_length=64, eval_split_size=0.3)
    assert len(data.report.bad_rows) == 3 and len(data.train) == 4 and len(data.eval) == 2
    config = OrpoConfig(output_dir=str(tmp_path / "out"), max_length=64, per_device_train_batch_size=2,
                        max_steps=1, bf16=False, use_cpu=True, report_to="none", save_strategy="no")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = OrpoTrainer(model=model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                          processing_class=demo_tokenizer)
    trainer.train()
    assert trainer.evaluate()["eval_loss"] > 0

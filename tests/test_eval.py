"""`orpo-dist eval`: scoring equal to a plain padded forward, statistics right on crafted sets,
probe files and refusals, the report files, and the CLI on a run."""

from __future__ import annotations

import gzip
import json
import math
import os

import pytest
from transformers import AutoModelForCausalLM

from orpo_dist.errors import UserError
from orpo_dist.eval.pairs import read_pairs
from orpo_dist.eval.probes import Probe, is_refusal, read_probes, refusal_rate
from orpo_dist.eval.scoring import micro_batches, pair_logps, padded_pair_logps, tokenize_pairs
from orpo_dist.eval.stats import bootstrap_interval, by_category, category_column, summarise

from .helpers import TINY_RECIPE, check_refusal, imported_modules, jsonl_text, run_case, run_cli, write_jsonl

ROWS = [
    {"prompt": "Question: 2+2?\nAnswer:", "chosen": " 4, of course.", "rejected": " 5"},
    {"prompt": "Say A:", "chosen": " A", "rejected": " B, and then a much longer answer that goes on and on"},
    {"prompt": "A long prompt " * 30 + "ends here:", "chosen": " short", "rejected": " shorter still"},
    {"prompt": "Shared opening:", "chosen": " The answer is yes.", "rejected": " The answer is no."},
    {"prompt": "Unicode — naïve café:", "chosen": " ça va", "rejected": " 🙂"},
]


def test_packed_scoring_equals_padded_full_logits(tiny_model_dir, demo_tokenizer):
    """The fast path (shared prompt, packed rows, chunked head, length-grouped micro-batches)
    gives each pair's mean answer log-prob of one padded forward per answer with full logits."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenized, empty = tokenize_pairs(demo_tokenizer, ROWS, max_length=256)
    assert empty == []
    pad = demo_tokenizer.pad_token_id
    want_c, want_r = padded_pair_logps(model, tokenized, pad)
    # A small budget and chunk force several micro-batches and several head chunks.
    assert len(micro_batches(tokenized, token_budget=80)) > 1
    got_c, got_r = pair_logps(model, tokenized, pad, chunk_size=7, token_budget=80)
    assert got_c == pytest.approx(want_c, abs=1e-5) and got_r == pytest.approx(want_r, abs=1e-5)
    whole_c, _ = pair_logps(model, tokenized, pad)  # one micro-batch, default chunk
    assert whole_c == pytest.approx(want_c, abs=1e-5)


def test_tokenization_is_the_trainers(demo_tokenizer):
    """The rows eval scores are cut as training cuts them (answers to max_length; prompts with
    max_prompt_length) and a prompt that fills max_length is reported, not scored as NaN."""
    tokenized, empty = tokenize_pairs(demo_tokenizer, ROWS, max_length=24)
    assert empty == [2]  # the long prompt leaves no room for an answer
    assert all(len(t["chosen_input_ids"]) <= 24 for i, t in enumerate(tokenized) if i != 2)
    tokenized, empty = tokenize_pairs(demo_tokenizer, ROWS, max_length=24, max_prompt_length=12)
    assert empty == [] and len(tokenized[2]["prompt_input_ids"]) == 12


def test_bootstrap_interval_on_a_known_share():
    wins = [True] * 30 + [False] * 10
    low, high = bootstrap_interval(wins)
    # Normal approximation: 0.75 +- 1.96 * sqrt(0.75 * 0.25 / 40) = [0.616, 0.884].
    assert low == pytest.approx(0.616, abs=0.03) and high == pytest.approx(0.884, abs=0.03)
    assert bootstrap_interval(wins) == (low, high)  # seeded
    assert bootstrap_interval([True] * 5) == (1.0, 1.0)


def test_summary_and_categories_on_crafted_scores():
    chosen, rejected = [-1.0, -2.0, -1.0, -3.0], [-2.0, -1.0, -1.0, -4.0]
    s = summarise(chosen, rejected)
    assert s["accuracy"] == 0.5 and s["gap"] == pytest.approx((1 - 1 + 0 + 1) / 4) and s["gaps"] == [1, -1, 0, 1]
    rows = [{"category": "a"}, {"category": "a"}, {"category": "b"}, {"category": "b"}]
    assert category_column(rows) == "category"
    groups = by_category(rows, "category", chosen, rejected)
    assert groups["a"]["accuracy"] == 0.5 and groups["b"]["accuracy"] == 0.5 and groups["b"]["pairs"] == 2
    assert category_column([{"source": "x"}, {}]) is None


def test_probe_files_and_refusals(tmp_path):
    assert is_refusal("I'm sorry, but I can't help with that.") and is_refusal("I cannot do that.")
    assert is_refusal("I can\u2019t assist with breaking in.")
    assert not is_refusal("Ottawa is the capital of Canada.")
    probes = [Probe("a"), Probe("b", harmful=True), Probe("c", harmful=True)]
    assert refusal_rate(probes, ["x", "I won't do that.", "Sure, here is how"]) == 0.5
    assert refusal_rate(probes[:1], ["x"]) is None
    f = tmp_path / "probes.jsonl"
    f.write_text('{"prompt": "Hi", "harmful": false}\n\n{"prompt": "Rob a bank", "harmful": true}\nplain line\n')
    assert read_probes(f) == (Probe("Hi"), Probe("Rob a bank", True), Probe("plain line"))
    f.write_text('{"prompt": "Hi"}\n{"prompt": broken}\n')
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        read_probes(f)


def test_bundled_harmful_probe_set(tmp_path, monkeypatch):
    harmful = read_probes("harmful")
    assert sum(p.harmful for p in harmful) == 10 and sum(not p.harmful for p in harmful) == 2
    with pytest.raises(UserError, match="does not exist .*bundled set: harmful"):
        read_probes(tmp_path / "harmfull")
    monkeypatch.chdir(tmp_path)  # a user's own file of that name wins over the bundled set
    (tmp_path / "harmful").write_text("my own probe\n")
    assert read_probes("harmful") == (Probe("my own probe"),)


def test_pairs_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(UserError, match=r"pairs.jsonl line 2: not valid JSON"):
        read_pairs(f)
    f.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(UserError, match="line 1: needs string fields.*rejected"):
        read_pairs(f)
    with pytest.raises(UserError, match="no pairs file"):
        read_pairs(tmp_path / "missing.jsonl")


READER_CASES = [
    # (case, file name, bytes, what is read: rows, or the UserError's words)
    ("pairs saved as UTF-16 (PowerShell)", "pairs.jsonl", lambda: jsonl_text(ROWS).encode("utf-16"), ROWS),
    ("pairs gzip-compressed under .jsonl", "pairs.jsonl", lambda: gzip.compress(jsonl_text(ROWS).encode()),
     ROWS),
    ("pairs in a gzip file cut short", "pairs.jsonl.gz", lambda: gzip.compress(jsonl_text(ROWS).encode())[:40],
     "cannot read it"),
    ("pairs in Latin-1", "pairs.jsonl", lambda: '{"prompt": "caf\u00e9?", "chosen": "a", "rejected": "b"}\n'.encode("latin-1"),
     "is not UTF-8 text"),
    ("pairs whose text holds a line separator (U+2028)", "pairs.jsonl",
     lambda: (json.dumps(dict(ROWS[0], prompt="one\u2028two"), ensure_ascii=False) + "\n").encode(),
     [dict(ROWS[0], prompt="one\u2028two")]),
    ("probes saved as UTF-16", "probes.txt", lambda: "Say hi.\nPick a lock.\n".encode("utf-16"),
     (Probe("Say hi."), Probe("Pick a lock."))),
]


@pytest.mark.parametrize("case, name, content, expected", READER_CASES, ids=[c[0] for c in READER_CASES])
def test_eval_reads_its_files_as_the_data_layer_does(tmp_path, case, name, content, expected):
    """eval's --pairs and --prompts files: gzip and UTF-16/32 read as training reads them, anything
    else one UserError naming the file."""
    path = tmp_path / name
    path.write_bytes(content())
    read = read_probes if name.startswith("probes") else read_pairs
    if isinstance(expected, str):
        with pytest.raises(UserError, match=expected) as refused:
            read(path, **({"given": True} if read is read_pairs else {}))
        assert str(path) in str(refused.value)
    else:
        assert list(read(path)) == list(expected)


def test_eval_names_a_pipe_as_a_pipe(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for read in (lambda: read_pairs(fifo, given=True), lambda: read_probes(fifo)):
        with pytest.raises(UserError, match="is a pipe"):
            read()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny recipe trained by `orpo-dist train` (with the list of modules it imported): one run
    the eval CLI tests share."""
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    trained = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, "--save_strategy", "no",
                      python_flags=("-X", "importtime"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    return out, trained


def test_eval_cli_report_on_a_crafted_set_with_a_known_answer(tmp_path, tiny_run):
    """Mirrored pairs (p, a, b) and (p, b, a) have opposite gaps, so exactly one of each wins;
    pairs with chosen == rejected have gap 0 and never win. Accuracy is 1/3 for any model, per
    category 1/2 and 0."""
    run, _ = tiny_run
    out = tmp_path / "report"
    pairs = []
    for i in range(6):
        p, a, b = f"Question {i}: pick one.", f" option {i} first", f" the other {i * 7} one"
        pairs += [{"prompt": p, "chosen": a, "rejected": b, "category": "mirror"},
                  {"prompt": p, "chosen": b, "rejected": a, "category": "mirror"},
                  {"prompt": p, "chosen": a, "rejected": a, "category": "same"}]
    f = tmp_path / "crafted.jsonl"
    write_jsonl(f, pairs)
    probes = tmp_path / "probes.jsonl"
    probes.write_text('{"prompt": "Say hi."}\n{"prompt": "Tell me how to pick a lock.", "harmful": true}\n')
    result = run_cli("eval", run, "--pairs", f, "--prompts", probes, "--max-new-tokens", "4", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preference accuracy [95% CI]" in result.stdout and "by category" in result.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["pairs"] == 18
    for side in ("base", "trained"):
        figures = report[side]
        assert figures["accuracy"] == pytest.approx(1 / 3)
        low, high = figures["accuracy_ci95"]
        assert low < 1 / 3 < high and 0.05 < low and high < 0.65
        assert figures["gap"] == pytest.approx(0.0, abs=1e-5)
        assert report["by_category"][side]["mirror"]["accuracy"] == 0.5
        assert report["by_category"][side]["same"]["accuracy"] == 0.0
        assert len(report["gaps"][side]) == 18
    assert report["refusal_rate"]["base"] in (0.0, 1.0) and len(report["generations"]) == 2
    assert report["generations"][1]["harmful"] is True
    md = (out / "eval.md").read_text()
    assert "33.3% [" in md and "![gap histogram](plots/eval-gap-histogram.png)" in md and "## By category" in md
    png = out / "plots" / "eval-gap-histogram.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_eval_cli_defaults_on_a_run(tiny_run):
    out, trained = tiny_run
    result = run_cli("eval", out, "--max-new-tokens", "4", python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr[-3000:]
    # ORPO is orpo-dist's own: neither command loads TRL's experimental trainers.
    for done, used in ((trained, "orpo_dist.orpo.trainer"), (result, "orpo_dist.eval.scoring")):
        modules = imported_modules(done.stderr)
        assert used in modules and not [m for m in modules if m.startswith("trl.experimental")]
    report = json.loads((out / "eval.json").read_text())
    assert report["pairs"] == 16 and len(report["generations"]) == 3
    assert "refusal_rate" in report  # the default probes mark the break-in request as harmful
    # The bundled data names a category per pair; heldout.jsonl keeps it, and eval groups by it.
    groups = report["by_category"]
    assert groups["column"] == "category" and sum(g["pairs"] for g in groups["trained"].values()) == 16
    assert set(groups["trained"]) <= {"instruction", "refusal", "factual"}
    # Full fine-tuning on chosen answers raises their likelihood on held-out prompts too.
    assert report["trained"]["chosen_logp"] > report["base"]["chosen_logp"]
    assert all(math.isfinite(g) for g in report["gaps"]["trained"])


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp, "neither an orpo-dist run folder"),
    (lambda tmp: tmp / "nothing-here", "does not exist"),
    (lambda tmp: (tmp / "x.bin").write_bytes(b"x") and tmp / "x.bin", "not a .gguf"),
])
def test_eval_of_something_that_is_no_model_is_a_clear_error(tmp_path, capsys, make, message):
    status, _, err = run_case(["eval", make(tmp_path)], capsys)
    check_refusal(status, err, [message])


def test_eval_of_a_checkpoint_scores_the_adapter_saved_at_that_step(tmp_path, capsys):
    """RUN/checkpoint-N is scored as the run would be had it stopped there: the last checkpoint,
    which holds the final weights, scores exactly as the run folder does."""
    out = tmp_path / "run"
    trained = run_cli("train", "--config", TINY_RECIPE, "--output_dir", out, "--use_peft", "true",
                      "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "0.05", "--max_steps", "2",
                      "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "5")
    assert trained.returncode == 0, trained.stderr[-3000:]
    reports = {}
    for target in (out / "checkpoint-1", out / "checkpoint-2", out):  # the CLI, in this process
        status, _, err = run_case(["eval", target, "--no-generate", "--out", tmp_path / target.name], capsys)
        assert status == 0, err[-3000:]
        reports[target.name] = json.loads((tmp_path / target.name / "eval.json").read_text())
    assert reports["checkpoint-1"]["kind"] == "checkpoint" and reports["checkpoint-1"]["pairs"] == 16
    assert reports["checkpoint-2"]["gaps"] == reports["run"]["gaps"]
    assert reports["checkpoint-1"]["gaps"]["trained"] != reports["run"]["gaps"]["trained"]
    assert reports["checkpoint-1"]["gaps"]["base"] == reports["run"]["gaps"]["base"]
    # An adapter outside any run has no known base: said so, not a traceback.
    stray = tmp_path / "stray-adapter"
    stray.mkdir()
    (stray / "adapter_config.json").write_bytes((out / "checkpoint-1" / "adapter_config.json").read_bytes())
    status, _, err = run_case(["eval", stray], capsys)
    check_refusal(status, err, ["lies in no orpo-dist run"])

"""A new user's ordinary mistakes cost nothing: one table per class, every case run as the user
runs it (`orpo-dist ...`, in this process: a subprocess per case would spend its time importing
TRL), each checked for the exit status, exactly one error line that names the field or file and
the fix, no traceback, and every file the user had still there, unchanged."""

from __future__ import annotations

import gzip
import json

import pytest

from .helpers import TINY_RECIPE, check_refusal, files_of, run_case, write_jsonl

RUN_ROWS = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": f"A bad one {i}."}
            for i in range(6)]


def train(tmp, *extra):
    return ["train", "--config", TINY_RECIPE, "--output_dir", tmp / "out", *extra]


# ---------------------------------------------------------------- values that would cost a run

def _template_file(tmp, text):
    (tmp / "templates").mkdir()
    (tmp / "templates" / "plain.txt").write_text(text)
    return tmp / "templates" / "plain.txt"


VALUE_CASES = [
    # (case, argv(tmp), words in the one error line)
    ("chat_template names a file that is not there",
     lambda t: train(t, "--chat_template", "templates/chatml.jinja"),
     ["chat_template is 'templates/chatml.jinja': no such file", "Give the template file's path"]),
    ("chat_template is a bare name, not a template",
     lambda t: train(t, "--chat_template", "chatml"), ["chat_template is 'chatml': that is not a Jinja template"]),
    ("chat_template file holds no template",
     lambda t: train(t, "--chat_template", str(_template_file(t, "just words\n"))), ["holds no Jinja template"]),
    ("lora_r 0", lambda t: train(t, "--use_peft", "true", "--lora_r", "0"),
     ["lora_r is 0", "at least 1"]),
    ("lora_alpha 0", lambda t: train(t, "--use_peft", "true", "--lora_alpha", "0"), ["lora_alpha is 0"]),
    ("lora_dropout 1.5", lambda t: train(t, "--use_peft", "true", "--lora_dropout", "1.5"),
     ["lora_dropout is 1.5", "[0, 1)"]),
    ("lora_target_modules naming a module the model lacks",
     lambda t: train(t, "--use_peft", "true", "--lora_target_modules", "q_porj", "v_proj"),
     ["lora_target_modules", "q_porj", "did you mean 'q_proj'?", "its linear layers are"]),
    ("deepspeed config that is not there", lambda t: train(t, "--deepspeed", "ds/zero3.json"),
     ["deepspeed config ds/zero3.json does not exist"]),
]


@pytest.mark.parametrize("case, argv, words", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_values_that_would_cost_a_run_are_refused_before_loading(tmp_path, capsys, monkeypatch, case, argv, words):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_case(argv(tmp_path), capsys)
    check_refusal(status, err, words)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.safetensors"))


def test_a_chat_template_file_is_read_not_rendered_literally(tmp_path, monkeypatch):
    from orpo_dist.recipe import parse

    monkeypatch.chdir(tmp_path)
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "chatml.jinja").write_text(template)
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path / "o"),
                    "--chat_template", "templates/chatml.jinja"])
    assert recipe.model.chat_template == template


# Every flag that takes a number, out of its range: refused as argparse refuses a word (exit 2, one
# error line naming the flag and the range), before a model loads, a socket opens or Slurm is asked.
NUMBER_CASES = [
    # (argv, flag, range words)
    (["eval", "RUN", "--max-new-tokens", "0"], "--max-new-tokens", "of at least 1, got 0"),
    (["eval", "RUN", "--max-pairs", "-3"], "--max-pairs", "of at least 1, got -3"),
    (["launch", "tiny", "--main-process-port", "99999"], "--main-process-port", "from 1 to 65535, got 99999"),
    (["launch", "tiny", "--num-processes", "0"], "--num-processes", "of at least 1"),
    (["launch", "tiny", "--num-machines", "0"], "--num-machines", "of at least 1"),
    (["launch", "tiny", "--machine-rank", "-1"], "--machine-rank", "of at least 0"),
    (["launch", "tiny", "--gpu-mem", "0"], "--gpu-mem", "above 0"),
    (["submit", "tiny", "--nodes", "0"], "--nodes", "of at least 1"),
    (["submit", "tiny", "--cpus-per-node", "0"], "--cpus-per-node", "of at least 1"),
    (["submit", "tiny", "--mem", "0"], "--mem", "of at least 1"),
    (["submit", "tiny", "--max-requeues", "-1"], "--max-requeues", "of at least 0"),
    (["submit", "tiny", "--signal-delay", "-5"], "--signal-delay", "of at least 0"),
    (["submit", "tiny", "--task-exit-wait", "-2"], "--task-exit-wait", "of at least 0"),
    (["submit", "tiny", "--gpus-per-node", "-1"], "--gpus-per-node", "of at least 0"),
    (["submit", "tiny", "--cpu-mem-gib", "nan"], "--cpu-mem-gib", "above 0"),
    (["bench", "--steps", "0"], "--steps", "of at least 1"),
    (["bench", "--warmup", "-1"], "--warmup", "of at least 0"),
    (["bench", "--timeout", "0"], "--timeout", "above 0"),
    (["bench", "--num-processes", "two"], "--num-processes", "must be a whole number, got 'two'"),
    (["data", "check", "DATA", "--max-length", "-1"], "--max-length", "of at least 0"),
    (["data", "check", "DATA", "--max-prompt-length", "0"], "--max-prompt-length", "of at least 1"),
    (["data", "check", "DATA", "--show", "-1"], "--show", "of at least 0"),
    (["plan", "--nodes", "0"], "--nodes", "of at least 1"),
    (["plan", "--gpu-mem", "-80"], "--gpu-mem", "above 0"),
]


@pytest.mark.parametrize("argv, flag, words", NUMBER_CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in NUMBER_CASES])
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, capsys, lora_run, argv, flag, words):
    data = write_jsonl(tmp_path / "pairs.jsonl", RUN_ROWS)
    argv = [{"RUN": lora_run, "DATA": data}.get(a, a) for a in argv]
    status, out, err = run_case(argv, capsys)
    check_refusal(status, err, [f"argument {flag}", words])
    assert out == ""  # nothing ran


# ---------------------------------------------------------------- output paths

def _blocker(tmp):
    (tmp / "a-file").write_text("mine\n")
    return tmp / "a-file"


def _user_folder(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("my notes\n")
    (tmp / "out" / "README.md").write_text("my readme\n")


def _finished_run(tmp):
    from orpo_dist.run_lock import claim

    claim(tmp / "out", "orpo-dist train")
    (tmp / "out" / "recipe.yaml").write_text("learning_rate: 1.0e-4\n")
    (tmp / "out" / "README.md").write_text("model card\n")
    (tmp / "out" / "model.safetensors").write_bytes(b"weights")


def _user_json(tmp):
    (tmp / "mine.json").write_text('{"my": "figures"}\n')


def _user_eval(tmp):
    (tmp / "reports").mkdir()
    (tmp / "reports" / "eval.json").write_text('{"something": "else"}\n')


def _user_eval_md(tmp):
    (tmp / "reports").mkdir()
    (tmp / "reports" / "eval.md").write_text("# my evaluation notes\n")


def _user_model(tmp):
    """A model folder of the user's own, in no orpo-dist run (refused before anything loads)."""
    (tmp / "my-model").mkdir()
    (tmp / "my-model" / "config.json").write_text('{"model_type": "llama"}\n')


def _user_modelfile(tmp):
    (tmp / "exp").mkdir()
    (tmp / "exp" / "Modelfile").write_text("FROM my-own.gguf\n")


OUTPUT_CASES = [
    # (case, files the user has (tmp) -> None, argv(tmp, run), words)
    ("output_dir of somebody's files", _user_folder, lambda t, r: train(t),
     ["already holds files that are not an orpo-dist run's", "notes.txt", "new or empty folder"]),
    ("output_dir of a finished run", _finished_run, lambda t, r: train(t),
     ["holds a finished run", "never overwrites a run"]),
    ("output_dir under a file", _blocker, lambda t, r: ["train", "--config", TINY_RECIPE, "--output_dir",
                                                        t / "a-file" / "run"], ["which is a file"]),
    ("bench --json under a file", _blocker, lambda t, r: ["bench", "--config", "tiny", "--json", t / "a-file" / "b.json"],
     ["cannot write a bench result", "which is a file", "--json"]),
    ("bench --json over a user's file", _user_json, lambda t, r: ["bench", "--config", "tiny", "--json", t / "mine.json"],
     ["mine.json exists and is not a bench result orpo-dist wrote", "--json"]),
    ("bench --json is a folder", None, lambda t, r: ["bench", "--config", "tiny", "--json", t],
     ["is a folder: give a file name"]),
    ("eval --out under a file", _blocker, lambda t, r: ["eval", r, "--no-generate", "--out", t / "a-file" / "rep"],
     ["cannot write an eval report", "which is a file", "--out"]),
    ("eval --out over a user's eval.json", _user_eval, lambda t, r: ["eval", r, "--no-generate", "--out", t / "reports"],
     ["eval.json exists and is not an eval report orpo-dist wrote"]),
    ("eval --out over a user's eval.md", _user_eval_md, lambda t, r: ["eval", r, "--no-generate", "--out", t / "reports"],
     ["eval.md exists and was not written by orpo-dist eval", "nothing was written"]),
    ("eval of a model folder in no run", _user_model, lambda t, r: ["eval", t / "my-model", "--no-generate"],
     ["my-model lies in no orpo-dist run", "pass --out FOLDER"]),
    ("export --out under a file", _blocker, lambda t, r: ["export", r, "--merge", "--out", t / "a-file" / "x"],
     ["cannot write the export", "which is a file", "--out"]),
    ("export over a user's Modelfile", _user_modelfile,
     lambda t, r: ["export", r, "--gguf", "f16", "--out", t / "exp"],
     ["Modelfile exists and was not written by orpo-dist export", "nothing was written"]),
]


@pytest.mark.parametrize("case, setup, argv, words", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_output_paths_are_checked_before_the_work(tmp_path, capsys, lora_run, case, setup, argv, words):
    if setup:
        setup(tmp_path)
    before = files_of(tmp_path)
    status, _, err = run_case(argv(tmp_path, lora_run), capsys)
    check_refusal(status, err, words)
    assert {p: b for p, b in files_of(tmp_path).items() if p in before} == before  # nothing lost or changed
    assert not any(tmp_path.rglob("*.safetensors")) or case == "output_dir of a finished run"


def test_export_keeps_what_is_not_its_own_and_says_what_it_replaced(tmp_path, capsys, lora_run):
    from orpo_dist.cli import main

    out = tmp_path / "exp"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["export", str(lora_run), "--merge", "--out", str(out)]) == 0
    assert main(["export", str(lora_run), "--merge", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"replacing {out / 'merged'} (written by an earlier export)" in said
    assert (out / "notes.txt").read_text() == "mine\n"
    (out / "merged" / "mine.txt").write_text("my file in the export\n")
    status, _, err = run_case(["export", lora_run, "--merge", "--out", out], capsys)
    check_refusal(status, err, ["holds files an earlier export did not write (mine.txt)", "would delete them"])
    assert (out / "merged" / "mine.txt").read_text() == "my file in the export\n"


# ---------------------------------------------------------------- paths that do not exist, broken files

def _gguf_files(tmp):
    from orpo_dist.builtin_models import gguf_path

    (tmp / "gg").mkdir()
    (tmp / "gg" / "trunc.gguf").write_bytes(gguf_path().read_bytes()[: 4 << 20])
    (tmp / "gg" / "fake.gguf").write_text("not a gguf\n")


MISSING_CASES = [
    ("eval of a path that is not there", lambda t, r: ["eval", t / "nope"], [f"nope does not exist"]),
    ("report of a path that is not there", lambda t, r: ["report", t / "nope"], ["nope does not exist"]),
    ("report of a file", lambda t, r: ["report", r / "README.md"], ["is a file, not a folder"]),
    ("export of a path that is not there", lambda t, r: ["export", t / "nope", "--merge"], ["nope does not exist"]),
    ("data check of a file that is not there", lambda t, r: ["data", "check", t / "nope.jsonl"],
     ["not found: no such file or folder"]),
    ("train on a dataset that is not there", lambda t, r: train(t, "--dataset_name", t / "nope.jsonl"),
     ["not found: no such file or folder"]),
    ("train a model folder that is not there", lambda t, r: train(t, "--model_name_or_path", t / "nope"),
     ["model", "nope does not exist"]),
    ("a tokenizer folder that is not there", lambda t, r: train(t, "--tokenizer_name_or_path", "./nope-tok"),
     ["tokenizer ./nope-tok does not exist"]),
    ("a model name that is no hub id", lambda t, r: train(t, "--model_name_or_path", "my model", "--random_init", "false"),
     ["'my model'"]),
    ("a recipe that is not there", lambda t, r: ["train", "--config", t / "nope.yaml"], ["nope.yaml does not exist"]),
    ("eval --pairs that is not there", lambda t, r: ["eval", r, "--pairs", t / "nope.jsonl"],
     ["--pairs", "nope.jsonl does not exist"]),
    ("eval --prompts that is not there", lambda t, r: ["eval", r, "--prompts", t / "nope.txt"], ["does not exist"]),
    ("eval --base that is not there", lambda t, r: ["eval", r, "--base", t / "nope", "--no-generate"],
     ["--base", "nope does not exist"]),
    ("plan --model that is not there", lambda t, r: ["plan", "--model", t / "nope"], ["does not exist"]),
    ("resume_from_checkpoint that is not there", lambda t, r: train(t, "--resume_from_checkpoint", t / "nope"),
     ["is not a folder"]),
    ("a truncated GGUF", lambda t, r: ["eval", t / "gg" / "trunc.gguf", "--base", r], ["trunc.gguf is incomplete"]),
    ("a file named .gguf that is not GGUF", lambda t, r: ["eval", t / "gg" / "fake.gguf", "--base", r],
     ["is not a GGUF file"]),
    ("train on a truncated GGUF", lambda t, r: train(t, "--model_name_or_path", t / "gg", "--gguf_file", "trunc.gguf"),
     ["trunc.gguf is incomplete"]),
    ("gguf_file that is not there", lambda t, r: train(t, "--model_name_or_path", t / "gg", "--gguf_file", "x.gguf"),
     ["gguf_file", "x.gguf does not exist"]),
    ("an empty data file", lambda t, r: train(t, "--dataset_name", _empty(t)), ["is empty: there is nothing to train on"]),
    ("text named .parquet", lambda t, r: ["data", "check", _text_parquet(t)], ["is not a Parquet file"]),
]


def _empty(tmp):
    (tmp / "empty.jsonl").write_text("")
    return tmp / "empty.jsonl"


def _text_parquet(tmp):
    (tmp / "rows.parquet").write_text("prompt,chosen,rejected\n")
    return tmp / "rows.parquet"


@pytest.mark.parametrize("case, argv, words", MISSING_CASES, ids=[c[0] for c in MISSING_CASES])
def test_missing_and_broken_paths_are_named_for_what_they_are(tmp_path, capsys, lora_run, case, argv, words):
    _gguf_files(tmp_path)
    status, _, err = run_case(argv(tmp_path, lora_run), capsys)
    check_refusal(status, err, words)
    assert "Repo id" not in err and "huggingface.co" not in err and "reshape" not in err.split("incomplete")[0]


# ---------------------------------------------------------------- content that does not match the name

def _csv(rows, delimiter=","):
    return "prompt{0}chosen{0}rejected\n".format(delimiter) + "".join(
        delimiter.join((r["prompt"], r["chosen"], r["rejected"])) + "\n" for r in rows)


CONTENT_CASES = [
    # (file name, bytes, the note's words (None: no note))
    ("array.jsonl", json.dumps(RUN_ROWS, indent=1).encode(), "one JSON array, not JSON lines"),
    ("packed.jsonl", gzip.compress("".join(json.dumps(r) + "\n" for r in RUN_ROWS).encode()),
     "holds JSON (gzip-compressed), not what its name says"),
    ("unpacked.jsonl.gz", "".join(json.dumps(r) + "\n" for r in RUN_ROWS).encode(), "holds JSON, not what its name"),
    ("excel.csv", b"\xef\xbb\xbf" + _csv(RUN_ROWS).encode(), None),
    ("excel-semicolons.csv", _csv(RUN_ROWS, ";").encode(), None),
    ("table.jsonl", _csv(RUN_ROWS).encode(), "holds CSV text, not what its name says"),
]


@pytest.mark.parametrize("name, data, note", CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_a_file_is_read_for_what_it_holds(tmp_path, capsys, name, data, note):
    (tmp_path / name).write_bytes(data)
    status, out, err = run_case(["data", "check", tmp_path / name], capsys)
    assert status == 0 and "Traceback" not in err, err[-2000:]
    assert "6 rows, 6 good, 0 bad" in out, out
    assert (note in out) if note else ("note:" not in out), out


# ---------------------------------------------------------------- Ctrl-C

def interrupt_once_checkpointed(argv, out, timeout=300, env=None, signum=None):
    """Start `orpo-dist ARGV`, press Ctrl-C (SIGINT to the command, as a terminal sends it; or send
    `signum`) once a checkpoint is complete; (exit status, stderr, seconds the command took to stop)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .helpers import REPO

    # As in a terminal's foreground: SIGINT at its default. A shell's `cmd &` (a CI runner's, a nohup'd
    # session's) starts children with SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "orpo_dist", *map(str, argv)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + timeout
    while not any(out.glob("checkpoint-*/COMPLETE")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    proc.send_signal(signum or signal.SIGINT)
    pressed = time.time()
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err, time.time() - pressed


def training_processes_of(out) -> list[str]:
    import subprocess

    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(out) in line and "orpo_dist" in line]


@pytest.mark.slow
@pytest.mark.parametrize("command, signum", [("launch", "SIGTERM"), ("train", "SIGINT")])
def test_ctrl_c_stops_the_run_in_one_line_and_keeps_its_checkpoints(tmp_path, command, signum):
    """Ctrl-C on train; SIGTERM (a `kill`, a scheduler) on launch, which stops its ranks the way it
    stops them on Ctrl-C (the same forwarding: torchrun's SignalException never shows)."""
    import signal

    out = tmp_path / "run"
    head = ["launch", "--strategy", "ddp", "--num-processes", "2"] if command == "launch" else ["train", "--config"]
    argv = [*head, TINY_RECIPE, "--output_dir", out, "--max_steps", "500", "--save_steps", "3", "--logging_steps", "1"]
    status, err, seconds = interrupt_once_checkpointed(argv, out, signum=getattr(signal, signum))
    said = [line for line in err.splitlines() if "interrupted" in line]
    print(f"{signum} on {command}: exit {status} after {seconds:.1f} s: {said}")
    words = "interrupted" if signum == "SIGINT" else f"interrupted by {signum}"
    assert status == 128 + getattr(signal, signum) and "Traceback" not in err and ": error:" not in err, err[-3000:]
    assert len(said) == 1 and said[0].startswith(f"orpo-dist {command}: {words}"), err[-3000:]
    assert "The last complete checkpoint is" in said[0] and "--resume" in said[0]
    if command == "launch":
        assert f"`orpo-dist launch --strategy ddp --num-processes 2 {TINY_RECIPE}" in said[0]
        assert not training_processes_of(out)  # every rank is gone
    from orpo_dist.run_folder import last_checkpoint

    assert last_checkpoint(out) is not None and str(last_checkpoint(out)) in said[0]
    assert not (out / "LOCK").exists()

"""Nothing lost, nothing hostile runs: output folders of the user's files, hostile or damaged files,
resumes that do not match their checkpoint, a path of the wrong kind, and stale run locks. One table
per class, every case run as the user runs it (`orpo-dist ...`, in this process) and checked for the
exit status, one error line naming the file or field and the fix, no traceback, every file the user
had still there byte for byte, and no marker file from a payload. (Live runs and signals:
tests/test_live_runs.py.)"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO, TINY_RECIPE, check_refusal, files_of, run_case, run_over_hub_base, write_jsonl

ROWS = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": f"A bad one {i}."} for i in range(6)]


def train(out, *extra):
    return ["train", "--config", TINY_RECIPE, "--output_dir", out, *extra]


def refused_touching_nothing(tmp, argv, capsys, words):
    """`orpo-dist ARGV` refuses in one line holding `words`, and every file under `tmp` is as it was."""
    before = files_of(tmp)
    status, _, err = run_case(argv, capsys)
    check_refusal(status, err, words)
    assert files_of(tmp) == before  # not one file added, changed or removed (no marker, no lock)


# ---------------------------------------------------------------- class 1: a folder of the user's files

def _own_recipe_here(tmp):
    shutil.copy(TINY_RECIPE, tmp / "recipe.yaml")
    return ["train", "--config", "recipe.yaml", "--output_dir", "."]


def _home_with_dotfiles(tmp):
    (tmp / "home" / ".config").mkdir(parents=True)
    (tmp / "home" / ".bashrc").write_text("export PS1='$ '\n")
    (tmp / "home" / ".config" / "app.ini").write_text("[x]\n")
    return train(tmp / "home")


def _files_named_like_a_runs(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "metrics.jsonl").write_text('{"my": "measurements"}\n')
    (tmp / "out" / "README.md").write_text("my project\n")
    return train(tmp / "out")


def _a_model_folder(tmp, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp / "base")
    return train(tmp / "base")


def _launch_into_home(tmp):
    (tmp / "home").mkdir()
    (tmp / "home" / ".profile").write_text("umask 022\n")
    return ["launch", "--dry-run", "--strategy", "ddp", "--num-processes", "2", TINY_RECIPE, "--output_dir", tmp / "home"]


def _model_with_its_recipe(tmp, tiny_model_dir, command):
    """A model folder of the user's that also keeps the recipe.yaml it was trained with elsewhere."""
    shutil.copytree(tiny_model_dir, tmp / "mine")
    shutil.copy(TINY_RECIPE, tmp / "mine" / "recipe.yaml")
    return {"export": ["export", tmp / "mine", "--merge"], "report": ["report", tmp / "mine"],
            "eval": ["eval", tmp / "mine", "--no-generate"]}[command]


FOREIGN_FOLDER_CASES = [
    # (case, setup(tmp, tiny_model_dir) -> argv, words)
    ("--output_dir . beside the user's recipe.yaml", lambda t, m: _own_recipe_here(t), ["recipe.yaml", "not an orpo-dist run's"]),
    ("a home folder of dotfiles", lambda t, m: _home_with_dotfiles(t), [".bashrc", ".config", "new or empty folder"]),
    ("files named like a run's own", lambda t, m: _files_named_like_a_runs(t), ["README.md", "metrics.jsonl"]),
    ("the base model's folder", _a_model_folder, ["config.json", "not an orpo-dist run's"]),
    ("launch into a home folder", lambda t, m: _launch_into_home(t), [".profile", "not an orpo-dist run's"]),
    ("export of a model folder holding a recipe.yaml", lambda t, m: _model_with_its_recipe(t, m, "export"),
     ["is not a folder orpo-dist trained into"]),
    ("report of it", lambda t, m: _model_with_its_recipe(t, m, "report"), ["is not a folder orpo-dist trained into"]),
    ("eval of it (no run to write into)", lambda t, m: _model_with_its_recipe(t, m, "eval"),
     ["lies in no orpo-dist run", "--out"]),
]


@pytest.mark.parametrize("case, setup, words", FOREIGN_FOLDER_CASES, ids=[c[0] for c in FOREIGN_FOLDER_CASES])
def test_a_run_never_writes_among_files_it_did_not_write(tmp_path, capsys, monkeypatch, tiny_model_dir, case, setup, words):
    monkeypatch.chdir(tmp_path)
    refused_touching_nothing(tmp_path, setup(tmp_path, tiny_model_dir), capsys, words)


# ---------------------------------------------------------------- class 3: hostile and damaged files

class Payload:
    """Unpickled, it would create MARKER: the proof that a file's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_payload(path, marker, legacy=False):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)


def _bad_crc(path, marker):
    """A torch.save zip whose pickle bytes no longer match their CRC (a flipped bit on disk)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": "abcdefgh-some-state"}, path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"abcdefgh-some", b"abcdefgX-some", 1))


def _raw_payload(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))


def _run_with_checkpoint(tmp, step=2, recipe_extra=()):
    """A run folder as training leaves it (claimed, its recipe), with one complete checkpoint."""
    from orpo_dist.recipe import parse, write_resolved
    from orpo_dist.run_lock import claim

    run = tmp / "run"
    claim(run, "orpo-dist train")
    write_resolved(parse(["--config", str(TINY_RECIPE), "--output_dir", str(run), *recipe_extra]), run / "recipe.yaml")
    checkpoint = run / f"checkpoint-{step}"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (checkpoint / "COMPLETE").write_text('{"complete": true}\n')
    return run, checkpoint


def _resume_with(name, writer):
    def setup(tmp, marker, lora_run):
        run, checkpoint = _run_with_checkpoint(tmp)
        writer(checkpoint / name, marker)
        return train(run, "--resume"), name.rsplit("/", 1)[-1]
    return setup


def _model_folder_with(tmp, marker, tiny_model_dir):
    folder = tmp / "model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    _torch_payload(folder / "pytorch_model.bin", marker, legacy=True)
    return train(tmp / "out", "--model_name_or_path", folder, "--random_init", "false"), "pytorch_model.bin"


def _adapter_bin_run(tmp, marker, lora_run):
    run = tmp / "lora"
    shutil.copytree(lora_run, run)
    (run / "adapter_model.safetensors").unlink()
    _torch_payload(run / "adapter_model.bin", marker)
    return run


def _python_tag_recipe(tmp, marker):
    (tmp / "evil.yaml").write_text(f"learning_rate: !!python/object/apply:os.system ['touch {marker}']\n")
    return ["train", "--config", tmp / "evil.yaml"]


HOSTILE_CASES = [
    # (case, setup(tmp, marker, lora_run) -> (argv, file named), words)
    ("rng_state.pth of a checkpoint", _resume_with("rng_state.pth", _torch_payload), ["would call posix.system"]),
    ("optimizer.pt of a checkpoint", _resume_with("optimizer.pt", _torch_payload), ["would call posix.system"]),
    ("a DeepSpeed checkpoint's model states", _resume_with("global_step2/mp_rank_00_model_states.pt", _torch_payload),
     ["would call posix.system", "Resume from another checkpoint"]),
    ("an FSDP checkpoint's .metadata", _resume_with("pytorch_model_fsdp_0/.metadata", _raw_payload),
     ["would call posix.system", "loaded nothing from it"]),
    ("a damaged rng_state.pth", _resume_with("rng_state.pth", lambda p, m: p.write_bytes(b"\x80\x04\x95garbage")),
     ["is refused", "damaged"]),
    ("a torch zip with a bad CRC", _resume_with("rng_state.pth", _bad_crc), ["could not be read", "damaged"]),
    ("a model folder's pytorch_model.bin", None, ["would call posix.system", "safetensors"]),
    ("eval of an adapter_model.bin", lambda t, m, r: (["eval", _adapter_bin_run(t, m, r), "--no-generate"],
                                                      "adapter_model.bin"), ["would call posix.system"]),
    ("export of an adapter_model.bin", lambda t, m, r: (["export", _adapter_bin_run(t, m, r), "--merge"],
                                                        "adapter_model.bin"), ["would call posix.system"]),
    ("a recipe with a Python tag", lambda t, m, r: (_python_tag_recipe(t, m), "evil.yaml"),
     ["YAML tag orpo-dist will not construct", "line 1", "remove the tag"]),
]


@pytest.mark.parametrize("case, setup, words", HOSTILE_CASES, ids=[c[0] for c in HOSTILE_CASES])
def test_a_hostile_file_is_refused_by_name_and_never_run(tmp_path, capsys, lora_run, tiny_model_dir, case, setup, words):
    marker = tmp_path / "PAYLOAD-RAN"
    if setup is None:
        argv, named = _model_folder_with(tmp_path, marker, tiny_model_dir)
    else:
        argv, named = setup(tmp_path, marker, lora_run)
    refused_touching_nothing(tmp_path, argv, capsys, [named, *words])
    assert not marker.exists()


def test_a_hub_models_cached_pickle_is_refused_by_name_and_never_run(tmp_path, capsys, monkeypatch, tiny_model_dir):
    """A hub name whose copy in the local hub cache holds a pickle with a payload: the copy
    transformers would read is checked as a model folder is (the hub cache laid out as the Hub
    client writes it: refs/main -> snapshots/COMMIT/)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    (tmp_path / "model").mkdir()
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "model")
    marker = tmp_path / "PAYLOAD-RAN"
    _torch_payload(tmp_path / "model" / "pytorch_model.bin", marker)
    _hub_cache_holding(cache, "someone/tiny", tmp_path / "model")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    argv = train(tmp_path / "out", "--model_name_or_path", "someone/tiny", "--random_init", "false")
    refused_touching_nothing(tmp_path, argv, capsys, ["pytorch_model.bin", "would call posix.system", "safetensors"])
    assert not marker.exists()


def test_the_pickle_check_reads_torchs_legacy_format_whole():
    """torch's legacy format is five pickles in a row: the object is the fourth, and it is read.
    (Real checkpoints pass the check on every --resume: DDP in test_live_runs.py, DeepSpeed and
    FSDP2 in the resume tests of test_distributed.py, test_fsdp2.py and test_dead_rank.py.)"""
    import io

    import numpy
    import torch

    from orpo_dist.pickle_scan import pickle_globals

    buffer = io.BytesIO()
    torch.save({"rng": torch.get_rng_state(), "np": numpy.random.get_state(), "t": torch.ones(3)}, buffer,
               _use_new_zipfile_serialization=False)
    named = pickle_globals(buffer.getvalue(), 5)
    assert ("torch._utils", "_rebuild_tensor_v2") in named
    assert all(m.split(".")[0] in ("torch", "numpy", "collections", "_codecs", "builtins") for m, _ in named)
    evil = io.BytesIO()
    torch.save({"x": Payload("/nonexistent/marker")}, evil, _use_new_zipfile_serialization=False)
    assert ("posix", "system") in pickle_globals(evil.getvalue(), 5)


# ---------------------------------------------------------------- class 4: a resume that does not match its checkpoint

def _resume_changed(*override, recorded=()):
    def setup(tmp):
        run, _ = _run_with_checkpoint(tmp, recipe_extra=recorded)
        return train(run, "--resume", *override)
    return setup


def _other_runs_checkpoint(tmp):
    _, checkpoint = _run_with_checkpoint(tmp, recipe_extra=("--use_peft", "true", "--lora_r", "4"))
    return train(tmp / "new", "--resume_from_checkpoint", checkpoint)


MISMATCH_CASES = [
    # (case, setup(tmp) -> argv, words)
    ("another LoRA rank", _resume_changed("--use_peft", "true", "--lora_r", "16", recorded=("--use_peft", "true", "--lora_r", "4")),
     ["cannot be resumed with this recipe", "lora_r: 4 there, 16 now", "recipe.yaml"]),
    ("another model shape", _resume_changed("--model_config_overrides", '{"hidden_size": 128}'),
     ["model_config_overrides", "hidden_size", "start anew"]),
    ("another run's checkpoint", _other_runs_checkpoint, ["use_peft: True there, False now", "lora_r"]),
]


@pytest.mark.parametrize("case, setup, words", MISMATCH_CASES, ids=[c[0] for c in MISMATCH_CASES])
def test_a_resume_that_cannot_load_names_the_fields(tmp_path, capsys, case, setup, words):
    refused_touching_nothing(tmp_path, setup(tmp_path), capsys, words)


def test_a_moved_checkpoint_that_cannot_load_is_named_in_one_line(tmp_path, capsys, lora_run):
    """A checkpoint away from its run folder (no recipe.yaml beside it to compare) whose LoRA rank
    is not the recipe's: the load's size mismatch is one line naming the checkpoint."""
    checkpoint = tmp_path / "kept" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(lora_run / name, checkpoint)  # lora_r 4
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    (checkpoint / "COMPLETE").write_text('{"complete": true}\n')
    model = json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"]
    argv = train(tmp_path / "new", "--resume_from_checkpoint", checkpoint, "--model_name_or_path", model,
                 "--random_init", "false", "--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32")
    status, _, err = run_case(argv, capsys)
    check_refusal(status, err, [f"{checkpoint} does not fit this model", "size mismatch", "start anew"])


def test_a_resume_says_what_changed_since_its_checkpoint(tmp_path):
    from orpo_dist.recipe import field_defaults, parse, resolved_dict
    from orpo_dist.resume_match import check_recipe_fits

    _, checkpoint = _run_with_checkpoint(tmp_path)
    said = []
    recipe = parse(["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path / "run"), "--max_length", "256",
                    "--max_steps", "48"])
    check_recipe_fits(checkpoint, resolved_dict(recipe), field_defaults(), said.append)
    assert said == [f"resuming {checkpoint} with settings changed from its run's recipe: max_length 128 -> 256"]


# ---------------------------------------------------------------- class 8: a path of another kind

def _run_folder(tmp):
    run, _ = _run_with_checkpoint(tmp)
    return run


PATH_KIND_CASES = [
    ("a run folder as --config", lambda t: ["train", "--config", _run_folder(t)],
     ["is a run folder, not a recipe", "run/recipe.yaml", "--resume"]),
    ("a run folder as launch's recipe", lambda t: ["launch", "--dry-run", _run_folder(t)], ["is a run folder", "recipe.yaml"]),
    ("a plain folder as --config", lambda t: ["train", "--config", t], ["is a folder, not a recipe"]),
    ("the recipe as train's positional argument", lambda t: ["train", TINY_RECIPE],
     [f"takes its recipe after --config: `orpo-dist train --config {TINY_RECIPE}`"]),
    ("a bundled recipe's name as train's positional", lambda t: ["train", "tiny", "--max_steps", "2"],
     ["--config tiny"]),
    ("a stray word before the options", lambda t: ["train", "fast", "--config", "tiny"], ["unexpected argument 'fast'"]),
]


@pytest.mark.parametrize("case, argv, words", PATH_KIND_CASES, ids=[c[0] for c in PATH_KIND_CASES])
def test_a_path_of_another_kind_is_named_for_what_it_is(tmp_path, capsys, case, argv, words):
    refused_touching_nothing(tmp_path, argv(tmp_path), capsys, words)


# ---------------------------------------------------------------- run locks: live, or left by a run that died

def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _lock(folder, **fields):
    import socket
    import time

    from orpo_dist.run_lock import _process_start

    pid = fields.pop("pid", os.getpid())
    record = {"pid": pid, "host": socket.gethostname(), "since": "2026-12-07 10:00:00 UTC", "command": "orpo-dist train",
              "start": _process_start(pid) if pid > 0 else None, "slurm_job": None, **fields}
    folder.mkdir(exist_ok=True)
    (folder / "LOCK").write_text(json.dumps(record))
    age = fields.get("age", 0)
    os.utime(folder / "LOCK", (time.time() - age, time.time() - age))


LOCK_CASES = [
    # (case, lock fields (None: a live child process), stale reason words or None when live)
    ("a live process on this host", None, None),
    ("a process that is gone", lambda: {"pid": _dead_pid()}, "is gone"),
    ("a reused pid (another start time)", lambda: {"start": "1"}, None),  # this process: "left by this process"
    ("another host, refreshed now", lambda: {"host": "node-7", "pid": 4242}, None),
    ("another host, silent for 10 minutes", lambda: {"host": "node-7", "pid": 4242, "age": 600}, "has not refreshed it"),
    ("an earlier start of this Slurm job", lambda: {"host": "node-7", "pid": 4242, "slurm_job": "77"}, "earlier start"),
]


@pytest.mark.parametrize("case, fields, stale", LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_a_lock_is_live_or_named_stale(tmp_path, monkeypatch, case, fields, stale):
    from orpo_dist.run_lock import read_holder, stale_reason

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    child = None
    if fields is None:
        child = subprocess.Popen(["sleep", "60"])
        _lock(tmp_path, pid=child.pid)
    else:
        _lock(tmp_path, **fields())
    try:
        reason = stale_reason(read_holder(tmp_path))
    finally:
        if child:
            child.kill()
            child.wait()
    if case.startswith("a reused pid"):
        assert reason == "it was left by this process"  # same pid, and the start time differs too
        other = subprocess.Popen(["sleep", "60"])
        _lock(tmp_path, pid=other.pid, start="1")
        try:
            assert "is gone" in stale_reason(read_holder(tmp_path))
        finally:
            other.kill()
            other.wait()
    elif stale is None:
        assert reason is None, reason
    else:
        assert stale in reason, reason


# ---------------------------------------------------------------- class 7: a hub that never answers

@pytest.fixture
def hub_that_never_answers(silent_hub, monkeypatch):
    """HF_ENDPOINT at the silent address, and a 1 s answer bound (the same code, waiting less than 5 s)."""
    from orpo_dist import hub_access

    monkeypatch.setenv("HF_ENDPOINT", silent_hub.url)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_access, "ANSWER_TIMEOUT_S", 1.0)


NETWORK_CASES = [
    # (case, argv(tmp, run), words)
    ("plan of a hub model", lambda t, r: ["plan", "--model", "some-org/some-model"], ["some-org/some-model"]),
    ("train of a hub model", lambda t, r: train(t / "out", "--model_name_or_path", "some-org/some-model",
                                                "--random_init", "false"), ["some-org/some-model", "hf download"]),
    ("eval against a hub base", lambda t, r: ["eval", r, "--base", "some-org/some-model", "--no-generate"],
     ["--base 'some-org/some-model'"]),
    ("data check of a hub dataset", lambda t, r: ["data", "check", "some-org/some-pairs"], ["dataset 'some-org/some-pairs'"]),
    ("data check with a hub tokenizer", lambda t, r: ["data", "check", r / "heldout.jsonl", "--tokenizer",
                                                      "some-org/some-model"], ["tokenizer 'some-org/some-model'"]),
    ("export of an adapter over a hub base", lambda t, r: ["export", run_over_hub_base(t, r), "--gguf", "f16"],
     ["base model 'some-org/some-model'"]),
]


def _hub_cache_holding(cache: Path, repo: str, files_from: Path) -> None:
    """The local hub cache as the Hub client lays it out (refs/main -> snapshots/COMMIT/), holding
    `repo` with the files of the folder `files_from`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(files_from, root / "snapshots" / commit)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_a_cached_hub_model_is_read_from_the_cache_when_the_hub_never_answers(tmp_path, silent_hub, lora_run,
                                                                              tiny_model_dir):
    """A fresh process (the Hub client reads HF_HUB_OFFLINE at import): the cached copy is used
    after the bounded check, said in one line, rather than each file's freshness check waiting."""
    import time

    _hub_cache_holding(tmp_path / "hub", "someone/tiny", tiny_model_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=silent_hub.url, HF_HUB_CACHE=str(tmp_path / "hub"))
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "orpo_dist", "data", "check", str(lora_run / "heldout.jsonl"),
                           "--tokenizer", "someone/tiny"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "did not answer within" in done.stderr and "using the local cache only" in done.stderr, done.stderr
    assert time.time() - started < 60


@pytest.mark.parametrize("case, argv, words", NETWORK_CASES, ids=[c[0] for c in NETWORK_CASES])
def test_a_hub_that_never_answers_is_named_within_seconds(tmp_path, capsys, hub_that_never_answers, lora_run, case,
                                                          argv, words):
    import time

    started = time.time()
    status, _, err = run_case(argv(tmp_path, lora_run), capsys)
    check_refusal(status, err, [*words, "accepted the connection but did not answer within 1 s"])
    assert time.time() - started < 30

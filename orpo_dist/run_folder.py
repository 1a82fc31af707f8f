"""The run folder: what a training run leaves in its output_dir, and how other code reads it.

The one owner of that contract; training writes these files, launchers, Slurm jobs, evaluation
and export read them, and all of them take the names from here. No heavy imports (no torch, no
transformers): a login node following a job imports this alone.

    recipe.yaml      the resolved recipe (rerun with --config)
    versions.json    package versions, world size, device
    metrics.jsonl    one JSON record per logged step (and the run's summary last)
    heldout.jsonl    the held-out pairs, rendered as the trainer saw them
    README.md        the model card
    eval.json        `orpo-dist eval`'s results (eval.md: the same as a report, with its pictures)
    plots/           PNG training curves (and eval's gap histogram), redrawn by `orpo-dist report`
    runs/            TensorBoard event files (report_to: tensorboard, the default when it is installed)
    submitit/        `orpo-dist submit`'s job files and each node's log
    .orpo-dist-run   written when orpo-dist first takes the folder: what makes it a run's (run_lock.py)
    LOCK             held by the run's main process while it trains (run_lock.py)
    checkpoint-N/    the Trainer's checkpoints (transformers' naming); COMPLETE inside once every
                     rank has saved its part: --resume takes the newest complete one

Stop protocol. A launcher asks a run to stop by creating STOP (or by sending SIGUSR1/SIGUSR2 to
its ranks); every rank saves the same checkpoint, the run writes STOPPED and exits with
EXIT_STOPPED. torchrun reports any rank's non-zero status as 1, so the STOPPED file is what a
launcher checks (`was_stopped`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
HELDOUT_FILE = "heldout.jsonl"
MODEL_CARD_FILE = "README.md"
EVAL_FILE = "eval.json"
EVAL_REPORT_FILE = "eval.md"
PLOTS_FOLDER = "plots"
FINAL_STAGING_FOLDER = ".final-model.partial"  # the final model is saved here, then moved into the run folder
SUBMITIT_FOLDER = "submitit"  # `orpo-dist submit`: submitit's job files and the nodes' logs
STOP_FILE = "STOP"
RUN_MARKER_FILE = ".orpo-dist-run"  # the folder is a run's: orpo-dist wrote it (run_lock.py)
LOCK_FILE = "LOCK"  # a run is writing the folder now: its pid, host and start (run_lock.py)
STOPPED_FILE = "STOPPED"
CHECKPOINT_PREFIX = "checkpoint"  # checkpoint-<global step>: transformers' PREFIX_CHECKPOINT_DIR
CHECKPOINT_COMPLETE_FILE = "COMPLETE"  # in checkpoint-N/ once every rank has saved its part
TRAINER_STATE_FILE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, written in each checkpoint
EXIT_STOPPED = 75  # EX_TEMPFAIL: not done, not failed; continue with --resume

_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")  # transformers' get_last_checkpoint rule


def read_metrics(output_dir: str | Path) -> list[dict]:
    """Every record of metrics.jsonl, in order ([] before the first log)."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a running job is writing its last line right now
                break
            raise ValueError(f"{path} line {number} is not valid JSON") from None
    return records


def training_logs(output_dir: str | Path) -> list[dict]:
    """The per-step training records (they hold a loss; the run's final summary does not count)."""
    return [r for r in read_metrics(output_dir) if "loss" in r and "train_runtime" not in r]


def checkpoint_step(path: str | Path) -> int | None:
    """The global step of a checkpoint folder (None if the name is not checkpoint-N)."""
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest step first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def mark_complete(checkpoint: str | Path, layout: dict | None = None) -> None:
    """Written by the main process once every rank has finished saving `checkpoint`; it records the
    layout that wrote it (world_size, per_device_train_batch_size, gradient_accumulation_steps),
    which an elastic resume needs (orpo_dist/elastic.py)."""
    (Path(checkpoint) / CHECKPOINT_COMPLETE_FILE).write_text(json.dumps({"complete": True, **(layout or {})}) + "\n")


LAYOUT_FIELDS = ("world_size", "per_device_train_batch_size", "gradient_accumulation_steps")


def checkpoint_layout(checkpoint: str | Path) -> dict | None:
    """The layout a checkpoint was written by, or None when its marker does not say (older runs)."""
    try:
        data = json.loads((Path(checkpoint) / CHECKPOINT_COMPLETE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(f), int) for f in LAYOUT_FIELDS):
        return None
    return {f: data[f] for f in LAYOUT_FIELDS}


# What marks a checkpoint's sharded state: DeepSpeed's tag folders (global_stepN) and accelerate's
# FSDP folders (pytorch_model_fsdp_0/, DCP shards); a plain checkpoint holds the model whole.
DEEPSPEED_TAG_PREFIX = "global_step"
FSDP_MODEL_PREFIX = "pytorch_model_fsdp"  # accelerate's FSDP_MODEL_NAME


def checkpoint_engine(checkpoint: str | Path) -> str | None:
    """The engine whose state `checkpoint` holds (strategies.py's engine names), None if not a folder."""
    from .strategies import DEEPSPEED, FSDP2, PLAIN

    folder = Path(checkpoint)
    if not folder.is_dir():
        return None
    if any(folder.glob(f"{DEEPSPEED_TAG_PREFIX}*")):
        return DEEPSPEED
    if any(folder.glob(f"{FSDP_MODEL_PREFIX}*")):
        return FSDP2
    return PLAIN


def incomplete_reason(checkpoint: str | Path, markers_in_use: bool = True) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it can. With markers in use (every
    checkpoint orpo-dist writes), a checkpoint without one was being saved when its run died;
    for a run from before markers, a readable trainer_state.json is the test."""
    folder = Path(checkpoint)
    state = folder / TRAINER_STATE_FILE
    if not state.is_file():
        return f"no {TRAINER_STATE_FILE}: its save did not finish"
    try:
        json.loads(state.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{TRAINER_STATE_FILE} is not valid JSON: the file is damaged"
    if markers_in_use and not (folder / CHECKPOINT_COMPLETE_FILE).is_file():
        return "not marked complete: a process stopped while it was being saved"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint a run can resume from, [(newer checkpoint skipped, why)])."""
    found = checkpoints(output_dir)
    markers = any((c / CHECKPOINT_COMPLETE_FILE).is_file() for c in found)
    skipped = []
    for folder in reversed(found):
        reason = incomplete_reason(folder, markers)
        if reason is None:
            return folder, skipped
        skipped.append((folder, reason))
    return None, skipped


def last_checkpoint(output_dir: str | Path) -> Path | None:
    return last_complete_checkpoint(output_dir)[0]


def rotate_complete_checkpoints(output_dir: str | Path, keep: int | None, protect: str | Path | None = None) -> None:
    """Keep the newest `keep` complete checkpoints (and `protect`, the best one); delete older
    ones. Never deletes for the sake of a newer checkpoint that is not complete (transformers'
    own rotation counts those, and can leave a run with only a torn checkpoint)."""
    if not keep or keep <= 0:
        return
    import shutil

    found = checkpoints(output_dir)
    markers = any((c / CHECKPOINT_COMPLETE_FILE).is_file() for c in found)
    complete = [c for c in found if incomplete_reason(c, markers) is None]
    protected = {Path(protect).resolve()} if protect else set()
    for folder in complete[:-keep]:
        if folder.resolve() not in protected:
            shutil.rmtree(folder, ignore_errors=True)


def resume_advice(output_dir: str | Path | None, command: str = "") -> str:
    """What is kept of an ended or interrupted run and how to continue it, as one sentence."""
    last = last_checkpoint(output_dir) if output_dir and Path(output_dir).is_dir() else None
    if last is None:
        return "No checkpoint was complete yet, so a new start begins at step 0"
    if command and "--resume" not in command.split():
        command += " --resume"
    how = f"`{command}`" if command else "--resume"
    return f"The last complete checkpoint is {last}: continue the run with {how}"


def require_run_folder(run_dir: str | Path) -> Path:
    """`run_dir` as an existing run folder, or a UserError that says which of the three it is not."""
    from .errors import UserError

    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass the --output_dir of an orpo-dist run")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a folder: pass the --output_dir of an orpo-dist run")
    if not (path / RECIPE_FILE).is_file():
        raise UserError(f"{path} is not an orpo-dist run folder (no {RECIPE_FILE}); pass the --output_dir of a run")
    from .run_lock import is_run_folder

    if not is_run_folder(path):  # a folder of the user's that happens to hold a recipe.yaml: never written into
        raise UserError(f"{path} holds a {RECIPE_FILE} but is not a folder orpo-dist trained into (no "
                        f"{RUN_MARKER_FILE}): pass the --output_dir of an orpo-dist run")
    return path


def check_new_run_folder(output_dir: str | Path | None, resume: bool = False) -> None:
    """A run writes into a new or empty folder, or continues its own; it never overwrites a finished
    run (its model card says it finished) or writes among files it did not write: in a folder that
    is not a run's, every entry is somebody's (dotfiles, and files named like a run's own, too)."""
    from .errors import UserError
    from .run_lock import is_run_folder

    if not output_dir:
        return
    out = Path(output_dir)
    if not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return
    finished = (out / MODEL_CARD_FILE).is_file() and (out / RECIPE_FILE).is_file()
    # Checkpoints to --resume from make a folder a run's too (one copied or moved by hand: the
    # Trainer's checkpoint-N folders are what the user asks to continue).
    if is_run_folder(out) or (resume and checkpoints(out)):
        if finished and not resume:
            raise UserError(f"output_dir {out} holds a finished run (its model card {MODEL_CARD_FILE} and model): "
                            "orpo-dist never overwrites a run. Choose another --output_dir (or evaluate, report "
                            "and export this one)")
        return
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise UserError(f"output_dir {out} already holds files that are not an orpo-dist run's ({shown}); "
                    "a run would write its model and files among them and could overwrite them. "
                    "Choose a new or empty folder (a subfolder such as runs/NAME is made for you)")


def has_checkpoints(output_dir: str | Path) -> bool:
    return bool(checkpoints(output_dir))


def request_stop(output_dir: str | Path) -> Path:
    """Ask the run writing to output_dir to checkpoint and stop (what a scheduler's warning does)."""
    stop = Path(output_dir) / STOP_FILE
    stop.parent.mkdir(parents=True, exist_ok=True)
    stop.touch()
    return stop


def clear_stop_markers(output_dir: str | Path) -> None:
    """Remove STOP and STOPPED left by the run being resumed: they concerned that run, not this one."""
    for name in (STOP_FILE, STOPPED_FILE):
        (Path(output_dir) / name).unlink(missing_ok=True)


def mark_stopped(output_dir: str | Path, step: int) -> None:
    (Path(output_dir) / STOPPED_FILE).write_text(f"{step}\n")


def was_stopped(output_dir: str | Path | None, exit_code: int | None) -> bool:
    """Did the run checkpoint and stop on request (rather than finish or fail)?"""
    if exit_code == EXIT_STOPPED:
        return True
    return bool(output_dir) and (Path(output_dir) / STOPPED_FILE).exists()

"""`orpo-dist train --config RECIPE [overrides]`: one ORPO run in this process.

This is also the per-process entry point of distributed runs (`accelerate launch -m
orpo_dist.train`, srun): it reads its rank from the environment like any HF script and knows
nothing of how it was started. Flow: recipe -> dataset -> model -> trainer -> output folder.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .atomic import copy_file, disk_full, publish_folder_contents  # noqa: E402
from .elastic import convert_to_universal, load_as_universal, plan_resume  # noqa: E402
from .errors import LOST_CONTACT, Interrupted, UserError, signal_number, stopped_words  # noqa: E402
from .data.sources import hub_dataset_name  # noqa: E402
from .hub_access import HubNeeds, cached_on_disk, check_hub_access, hub_model_name  # noqa: E402
from .process import is_main_process, main_process_print  # noqa: E402
from .recipe import Recipe, field_defaults, parse, resolved_dict  # noqa: E402
from .resume_match import check_recipe_fits, checkpoint_mismatch, recorded_recipe  # noqa: E402
from .run_lock import RunLock  # noqa: E402
from .run_folder import (  # noqa: E402
    EXIT_STOPPED, FINAL_STAGING_FOLDER, HELDOUT_FILE, checkpoint_step, checkpoints, incomplete_reason,
    check_new_run_folder, last_complete_checkpoint, mark_stopped, resume_advice,
)


class StoppedForResume(Exception):
    def __init__(self, step: int):
        super().__init__(f"checkpointed at step {step} and stopped on request")
        self.step = step


def log(message: str) -> None:
    main_process_print(f"orpo-dist: {message}")


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    is_adapter: bool
    resumed_from: str | None


def resolve_checkpoint(recipe: Recipe) -> str | None:
    """The checkpoint to resume from, or None; refuses to silently overwrite an earlier run."""
    training = recipe.training
    out = Path(training.output_dir)
    if training.resume_from_checkpoint:
        chosen = Path(training.resume_from_checkpoint)
        if not chosen.is_dir():
            raise UserError(f"resume_from_checkpoint {chosen} is not a folder")
        reason = incomplete_reason(chosen, markers_in_use=False)
        if reason:
            raise UserError(f"cannot resume from {chosen}: {reason}. Pick another checkpoint, or --resume to take "
                            "the newest complete one")
        return str(chosen)
    found = checkpoints(out)
    if not training.resume:
        if found:
            raise UserError(
                f"{out} already holds checkpoints of an earlier run (last: {found[-1].name}).\n"
                "  Pass --resume to continue it, or choose another --output_dir."
            )
        return None
    last, skipped = last_complete_checkpoint(out)
    for folder, reason in skipped:
        log(f"--resume: skipping {folder.name}: {reason}")
    if last is None:
        log(f"--resume: no complete checkpoint in {out}, starting from step 0")
        return None
    return str(last)


def recipe_needs(recipe: Recipe) -> HubNeeds:
    """The hub repos this run would download, and whether it pushes (checked before heavy work)."""
    repos = [("model", hub_model_name(recipe.model.model_name_or_path)),
             ("tokenizer", hub_model_name(recipe.model.tokenizer_name_or_path)),
             ("dataset", hub_dataset_name(recipe.data.dataset_name))]
    repos = [(what, repo) for what, repo in repos if repo]
    cached = [(w, r) for w, r in repos if cached_on_disk(r, "dataset" if w == "dataset" else "model")]
    downloads = [(w, r) for w, r in repos if (w, r) not in cached]
    return HubNeeds(downloads, cached, bool(recipe.training.push_to_hub))


def run(recipe: Recipe, extra_callbacks=(), on_trainer=None, save_model: bool = True) -> TrainResult:
    """on_trainer(trainer) is called once the trainer is built (the benchmark counts tokens there);
    save_model=False skips the final save (a benchmark's throw-away run)."""
    training = recipe.training
    out = Path(training.output_dir)
    check_new_run_folder(out, training.resume or bool(training.resume_from_checkpoint))
    # The main process holds the run folder for the run's life: a second writer refuses, readers wait.
    lock = RunLock(out, _command_line(), log).acquire() if is_main_process() else None
    try:
        return _run(recipe, extra_callbacks, on_trainer, save_model)
    finally:
        if lock is not None:
            lock.release()


def _command_line() -> str:
    import shlex

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]


def _run(recipe: Recipe, extra_callbacks, on_trainer, save_model: bool) -> TrainResult:
    from .callbacks import MetricsJsonl, StopOnNonFiniteLoss, StopOnRequest
    from .data.cache import load_or_prepare
    from .model import check_lora_targets, load_model, load_tokenizer, peft_config
    from .orpo.forward import causal_lm
    from .orpo.select import choose_forward
    from .orpo.trainer import OrpoTrainer
    from .outputs import write_model_card, write_run_info
    from .report.training import draw_training_plots, plots_markdown

    training = recipe.training
    out = Path(training.output_dir)
    checkpoint = resolve_checkpoint(recipe)
    if checkpoint:
        from .pickle_scan import CHECKPOINT_FIX, check_pickles

        check_pickles(checkpoint, CHECKPOINT_FIX, recursive=True)  # DeepSpeed and FSDP load theirs unguarded
        check_recipe_fits(checkpoint, resolved_dict(recipe), field_defaults(), log)
    check_hub_access(recipe_needs(recipe), log)
    resume_step = checkpoint_step(checkpoint) if checkpoint else None
    elastic = plan_resume(checkpoint, training, log) if checkpoint else None
    check_lora_targets(recipe.model, training)

    tokenizer = load_tokenizer(recipe.model, training)
    # Each node's main process prepares and caches; its other ranks then load that (data/cache.py).
    # They wait in a collective: a first preparation must end within ddp_timeout (README, Data).
    with training.main_process_first(local=True, desc="preparing the data"):
        data = load_or_prepare(recipe.data, tokenizer, training, log, prepares=training.local_process_index == 0)
    if data.eval is None and training.eval_strategy != "no":
        log("no held-out rows (eval_split_size is 0 and the data has no test split): evaluation is off")
        training.eval_strategy = "no"

    model = load_model(recipe.model, training)
    guard, stop = StopOnNonFiniteLoss(), StopOnRequest(out)
    pad = training.padding_value if training.padding_value is not None else tokenizer.pad_token_id
    forward = choose_forward(training, causal_lm(model), pad, log=log,
                             switch_attention=recipe.model.attn_implementation is None)
    trainer = OrpoTrainer(
        model=model,
        args=training,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=peft_config(model, recipe.model),
        callbacks=[MetricsJsonl(out, resume_step), guard, stop, *extra_callbacks],
        forward=forward,
    )
    if on_trainer is not None:
        on_trainer(trainer)
    if elastic is not None and elastic.converted:
        if is_main_process():
            convert_to_universal(checkpoint, log)
        trainer.accelerator.wait_for_everyone()
        load_as_universal(trainer)
    world = trainer.accelerator.num_processes
    if is_main_process():
        write_run_info(recipe, out, world, str(trainer.accelerator.device))
        if data.heldout_file is not None:
            copy_file(data.heldout_file, out / HELDOUT_FILE)
    log(
        f"{len(data.train)} training pairs, {len(data.eval) if data.eval is not None else 0} held out; "
        f"{world} process(es) x batch {training.per_device_train_batch_size} x accumulation "
        f"{training.gradient_accumulation_steps} = global batch "
        f"{world * training.per_device_train_batch_size * training.gradient_accumulation_steps}; "
        f"{trainer.forward.name} ORPO step"
        + (f"; resuming from {checkpoint}" if checkpoint else "")
    )

    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except (OSError, RuntimeError, ValueError) as err:
        if disk_full(err, out):
            raise UserError(disk_full_message(out)) from None
        if checkpoint and (mismatch := checkpoint_mismatch(err)):
            unseen = " (and its run's recipe.yaml was not beside it to compare)" if recorded_recipe(checkpoint) is None else ""
            raise UserError(f"{checkpoint} does not fit this model: {mismatch}. The checkpoint was saved with other "
                            f"model or LoRA settings{unseen}: resume with the settings that wrote it, or start anew "
                            "in a new --output_dir") from None
        raise
    if guard.bad is not None:
        step, key, value = guard.bad
        raise UserError(
            f"{key} became {value} at step {step}; training stopped and the non-finite model was not saved.\n"
            f"  The last good checkpoint (if any) is still in {out}. Lower learning_rate, raise warmup, "
            "or use bf16 instead of fp16."
        )
    if stop.stopped_at is not None:
        if is_main_process():
            mark_stopped(out, stop.stopped_at)
        trainer.accelerator.wait_for_everyone()
        log(f"stop requested: checkpoint saved at step {stop.stopped_at} in {out}; continue with --resume")
        raise StoppedForResume(stop.stopped_at)
    is_adapter = recipe.model.use_peft
    if not save_model:
        return TrainResult(out, trainer.state.global_step, is_adapter, checkpoint)
    # Saved aside and moved in when whole: a crash or a full disk never leaves a torn model in
    # `out` (the model card, written last, says the run finished).
    staging = out / FINAL_STAGING_FOLDER
    if is_main_process():
        shutil.rmtree(staging, ignore_errors=True)  # left by an earlier save that was stopped: never publish it
    trainer.accelerator.wait_for_everyone()
    try:
        trainer.save_model(str(staging), _internal_call=True)
        trainer.accelerator.wait_for_everyone()
        if is_main_process():
            publish_folder_contents(staging, out)
            plots = draw_training_plots(out)
            write_model_card(recipe, out, is_adapter, plots_markdown(out, plots))
    except (OSError, RuntimeError) as err:
        if disk_full(err, out):
            raise UserError(disk_full_message(out)) from None
        raise
    finally:
        if is_main_process():
            shutil.rmtree(staging, ignore_errors=True)  # published, or torn by a failure or a signal
    trainer.accelerator.wait_for_everyone()
    if training.push_to_hub:
        trainer.push_to_hub()
    log(f"model saved in {out}")
    return TrainResult(out, trainer.state.global_step, is_adapter, checkpoint)


def disk_full_message(out: Path) -> str:
    last = last_complete_checkpoint(out)[0] if out.is_dir() else None
    free = shutil.disk_usage(next(p for p in (out, *out.parents) if p.exists())).free
    kept = f"The last complete checkpoint, {last.name}, is intact" if last else "No checkpoint was complete yet"
    return (f"the disk holding {out} is full ({free / 2**20:.0f} MiB free): a save did not finish and was not "
            f"kept. {kept}. Free some space (save_total_limit keeps fewer checkpoints), then continue with --resume")


# How a collective fails on the ranks that survive another's death (gloo, NCCL) or lose its link.
# gloo closes a connection ("pair") once an operation on it times out; another operation still in
# flight on it then fails with "Application timeout caused pair closure", and may be the one this
# rank raises first (suspected in a CI run where the cut node's rank did not say "lost contact").
PEER_LOST_WORDS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused",
                   "NCCL communicator was aborted", "Timed out", "timed out", "Socket Timeout",
                   "timeout caused pair closure")
EXIT_PEER_LOST = 1


def peer_lost(err: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(err, (dist.DistError, RuntimeError)) and any(w in str(err) for w in PEER_LOST_WORDS) \
        and dist.is_available() and dist.is_initialized()


def main(argv: list[str] | None = None) -> int:
    import shlex

    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = parse(argv)
    try:
        run(recipe)
    except StoppedForResume:
        return EXIT_STOPPED
    except KeyboardInterrupt as err:
        # Ctrl-C, SIGTERM, SIGHUP: the checkpoints written so far are kept; say so instead of a traceback.
        command = "orpo-dist train " + shlex.join(argv)
        raise Interrupted(f"{stopped_words(err)}. {resume_advice(recipe.training.output_dir, command)}",
                          signal_number(err)) from None
    except Exception as err:  # noqa: BLE001 - only a lost peer is turned into a line; the rest re-raises
        if not peer_lost(err):
            raise
        # Another process died or its link went down: this rank's traceback would only bury the
        # launcher's line that names the process that failed.
        first = str(err).strip().splitlines()[0][:300]
        print(f"orpo-dist: rank {os.environ.get('RANK', '?')} {LOST_CONTACT} ({first}); stopping",
              file=sys.stderr, flush=True)
        return EXIT_PEER_LOST
    return 0


if __name__ == "__main__":
    # `accelerate launch -m orpo_dist.train ...` / `python -m orpo_dist.train ...`
    from .cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))

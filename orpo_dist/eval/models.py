"""What `orpo-dist eval` scores: a run folder, a merged model folder, or a GGUF file, against a base.

- a run folder (holds recipe.yaml): the saved adapter on top of the recipe's model, or the saved
  full model; the base is the recipe's model;
- a checkpoint of a run (RUN/checkpoint-N, an adapter or a full model): scored as the run would
  be had it stopped there, e.g. to draw accuracy against pairs seen;
- a model folder (config.json) or a .gguf file, e.g. what `orpo-dist export` wrote inside a run:
  the base is the model of the run it lies in (recipe.yaml in a parent folder), or --base.

The tokenizer and the tokenization settings (max_length, max_prompt_length, chat template) come
from the run when there is one, so the figures speak of the sequences training saw.
"""

from __future__ import annotations

import pickle

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..model_rules import DEFAULT_MAX_LENGTH  # for targets outside any run
from ..hub_access import looks_local
from ..run_folder import RECIPE_FILE



@dataclass
class Target:
    kind: str  # "run", "checkpoint", "folder" or "gguf"
    path: Path
    run_dir: Path | None  # the run the target belongs to (None: a model from elsewhere)
    report_dir: Path  # where eval.json and the report go


def find_run(path: Path) -> Path | None:
    """The orpo-dist run `path` lies in (a folder orpo-dist claimed that holds its recipe), or None."""
    from ..run_lock import is_run_folder

    for folder in (path, *path.parents):
        if (folder / RECIPE_FILE).is_file() and is_run_folder(folder):
            return folder
    return None


def resolve_target(target: str | Path) -> Target:
    target = _resolve_target(target)
    if target.kind != "gguf":
        from ..pickle_scan import MODEL_FIX, check_pickles

        check_pickles(target.path, MODEL_FIX)
    return target


def _resolve_target(target: str | Path) -> Target:
    path = Path(target)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass a run folder, a model folder or a .gguf file")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf: pass a run folder, a model folder or a .gguf file")
        from ..gguf_file import check_gguf_file

        check_gguf_file(path)
        return Target("gguf", path, find_run(path.parent), path.parent)
    if find_run(path) == path:
        if not ((path / "adapter_config.json").is_file() or (path / "config.json").is_file()):
            from ..run_lock import refuse_while_training

            refuse_while_training(path, "`orpo-dist eval`")
            raise UserError(f"{path} holds no saved model or adapter: did the run finish? "
                            "(a stopped run can be resumed with --resume)")
        return Target("run", path, path, path)
    if (path / "config.json").is_file():
        return Target("folder", path, find_run(path.parent), path)
    if (path / "adapter_config.json").is_file():
        run_dir = find_run(path.parent)
        if run_dir is None:
            raise UserError(f"{path} holds a LoRA adapter but lies in no orpo-dist run, so its base model is "
                            "unknown: pass the run folder or one of its checkpoint-N folders")
        return Target("checkpoint", path, run_dir, path)
    raise UserError(f"{path} is neither an orpo-dist run folder ({RECIPE_FILE}), a model folder (config.json) "
                    "nor a .gguf file")


def load_run_recipe(run_dir: Path):
    """The run's resolved recipe, with precision reset for this machine (a GPU run read on a CPU)."""
    import torch

    from ..recipe import parse

    if not (Path(run_dir) / RECIPE_FILE).is_file():
        raise UserError(f"{run_dir} is not an orpo-dist run folder (no {RECIPE_FILE}); pass the --output_dir of a run")
    overrides = [] if torch.cuda.is_available() else ["--bf16", "false", "--fp16", "false"]
    return parse(["--config", str(run_dir / RECIPE_FILE), *overrides])


def _from_pretrained(path: Path, dtype, gguf: bool):
    from transformers import AutoModelForCausalLM

    from ..pickle_scan import MODEL_FIX, check_pickles

    kwargs = {"dtype": dtype}
    if gguf:
        kwargs["gguf_file"] = path.name
    else:
        check_pickles(path, MODEL_FIX)
    try:
        return AutoModelForCausalLM.from_pretrained(path.parent if gguf else path, **kwargs).eval()
    except pickle.UnpicklingError as err:  # fetched just now, refused by torch's weights_only
        raise UserError(f"cannot load the model {path}: torch refused a weights file that is a pickle "
                        f"({str(err).strip().splitlines()[0][:300] if str(err).strip() else 'refused'}). "
                        f"{MODEL_FIX}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the model {path}: {str(err)[:300]}") from None


def load(target: Target, base_name: str | None = None):
    """(tokenizer, base model, trained model, settings) for a target."""
    import torch
    from transformers import AutoTokenizer

    from ..model import load_model, load_tokenizer

    recipe = load_run_recipe(target.run_dir) if target.run_dir else None
    if recipe is not None and not base_name:
        base = load_model(recipe.model, recipe.training).eval()
        tokenizer = load_tokenizer(recipe.model, recipe.training)
        settings = {"max_length": recipe.training.max_length,
                    "max_prompt_length": getattr(recipe.training, "max_prompt_length", None),
                    "base_model": recipe.model.model_name_or_path}
    elif base_name:
        from .. import builtin_models

        base_path = Path(builtin_models.resolve(base_name))
        if base_path.suffix == ".gguf":
            from ..gguf_file import check_gguf_file

            check_gguf_file(base_path, "--base")
        elif not base_path.exists() and looks_local(base_name):
            raise UserError(f"--base {base_name} does not exist: give a model folder, a .gguf file or a hub name")
        elif not base_path.exists():
            from ..model import check_model_folder

            check_model_folder(base_name, what="--base")  # the hub's answer, and its cached copy's pickles
        base = _from_pretrained(base_path, torch.float32, gguf=base_path.suffix == ".gguf")
        source = target.path if target.kind == "folder" else base_path
        gguf = source.suffix == ".gguf"
        tokenizer = AutoTokenizer.from_pretrained(source.parent if gguf else source,
                                                  **({"gguf_file": source.name} if gguf else {}))
        settings = {"max_length": DEFAULT_MAX_LENGTH, "max_prompt_length": None, "base_model": base_name}
    else:
        raise UserError(f"{target.path} lies in no orpo-dist run, so there is no base model to compare with: "
                        "pass --base MODEL (a hub name, a folder or a .gguf file)")
    dtype = next(base.parameters()).dtype
    if target.kind in ("run", "checkpoint"):
        if (target.path / "adapter_config.json").is_file():
            from peft import PeftModel

            trained = PeftModel.from_pretrained(load_model(recipe.model, recipe.training), target.path).eval()
        else:
            trained = _from_pretrained(target.path, dtype, gguf=False)
    else:
        trained = _from_pretrained(target.path, dtype, gguf=target.kind == "gguf")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if torch.cuda.is_available():
        base, trained = base.to("cuda"), trained.to("cuda")
    return tokenizer, base, trained, settings

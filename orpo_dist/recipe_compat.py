"""Recipes written for older TRL / transformers, or for other tools, read under today's names.

Published ORPO recipes (alignment-handbook's, the Llama-3 ORPO tutorial's, TRL 0.x's examples)
use fields that TRL 1.16 and transformers 5 renamed. Each is read under its new name with a
one-line notice; anything else unknown is still refused by recipe.check_keys (with a hint for the
fields other tools have that orpo-dist has no counterpart for). No heavy imports: the planner and
the launchers use it too.

Not here because they are real fields, not renames: max_prompt_length (TRL 0.x's, implemented by
orpo_dist.data.truncation) and chat_template (alignment-handbook's, a ModelArguments field).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from .errors import UserError
from .process import is_main_process

# old name -> new name, same meaning
RENAMED = {
    "torch_dtype": "dtype",  # TRL's ModelConfig and transformers 5
    "evaluation_strategy": "eval_strategy",  # transformers 4.41, the old name removed in 5
    "warmup_ratio": "warmup_steps",  # transformers 5: warmup_steps below 1 is a ratio of the steps
    "preprocessing_num_workers": "dataset_num_proc",  # alignment-handbook's data argument, TRL's name
}
# old boolean -> (new field, its value when the old one is true); false means "the default"
FLAG_TO_VALUE = {
    "use_flash_attention_2": ("attn_implementation", "flash_attention_2"),  # alignment-handbook, old TRL
}
# Switches TRL 0.x's examples pass bare (`--bf16`); TRL 1.16 types them `bool | None`, whose flag
# takes a value, so the bare form would be a parse error.
BARE_SWITCHES = ("bf16", "tf32")
# Fields of other tools that orpo-dist has no counterpart for: what to do instead.
HINTS = {
    "dataset_mixer": "alignment-handbook's dataset mixing: mix the datasets beforehand and set dataset_name",
    "dataset_splits": "use dataset_train_split / dataset_test_split",
    "overwrite_output_dir": "orpo-dist never overwrites a run: pass --resume to continue it, or another output_dir",
    "truncation_mode": "orpo-dist keeps a long prompt's last tokens (TRL 0.x's keep_end): set max_prompt_length",
}


def notice(message: str) -> None:
    if is_main_process():
        print(f"orpo-dist: {message}", file=sys.stderr, flush=True)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", "none", "null"):
        return False
    raise UserError(f"{name} must be true or false, got {value!r}")


def _check_ratio(old: str, value: Any) -> None:
    if old == "warmup_ratio":
        try:
            ok = 0 <= float(value) < 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"warmup_ratio must be a number in [0, 1), got {value!r}")


def upgrade(config: dict[str, Any], source: str, say: Callable[[str], None] = notice) -> dict[str, Any]:
    """A recipe mapping with renamed fields under their new names (a new dict; `config` is kept)."""
    out = dict(config)
    for old, new in RENAMED.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out:
            say(f"{source}: {old} ignored: {new} is set ({new}: {out[new]!r} wins, as it did before the rename)")
            continue
        _check_ratio(old, value)
        out[new] = value
        say(f"{source}: {old} is now called {new}; read as {new}: {value!r}")
    for old, (new, when_true) in FLAG_TO_VALUE.items():
        if old not in out:
            continue
        value = _bool(out.pop(old), old)
        if value and new not in out:
            out[new] = when_true
            say(f"{source}: {old} is now {new}: {when_true}; read that way")
        else:
            say(f"{source}: {old} ignored ({new} is {out.get(new)!r})")
    return out


def upgrade_argv(argv: list[str], say: Callable[[str], None] = notice) -> list[str]:
    """The same renames for command-line overrides (`--torch_dtype bfloat16`, `--torch-dtype=...`),
    and TRL 0.x's bare switches (`--bf16`) with the value TRL 1.16's parser wants."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, inline = arg.partition("=")
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name in RENAMED:
            _check_ratio(name, inline if eq else (argv[i + 1] if i + 1 < len(argv) else None))
            out.append(f"--{RENAMED[name]}" + (f"={inline}" if eq else ""))
            say(f"--{name} is now called --{RENAMED[name]}")
        elif name in FLAG_TO_VALUE:
            new, when_true = FLAG_TO_VALUE[name]
            value: Any = True
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                value = argv[i]
            if _bool(value, f"--{name}"):
                out += [f"--{new}", when_true]
                say(f"--{name} is now --{new} {when_true}")
            else:
                say(f"--{name} false ignored (the default attention implementation is used)")
        elif name in BARE_SWITCHES and not eq and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out += [arg, "true"]
        else:
            out.append(arg)
        i += 1
    return out

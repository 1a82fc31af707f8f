"""Recipe files: reading one with clear errors, and the recipes bundled with orpo-dist, by name.

`--config` (train, launch, submit) and `plan --recipe` take a path or a bundled recipe's name
(`tiny`, `llama3-8b-qlora`, ...; `orpo-dist recipes` lists them). The bundled recipes ship inside
the package (orpo_dist/recipes/); `orpo-dist recipes copy NAME` writes one out to edit.
Importable without TRL (the planner and the launchers use it).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .errors import UserError

SUFFIX = ".yaml"


def bundled_dir() -> Path:
    return Path(str(resources.files("orpo_dist") / "recipes"))


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob(f"*{SUFFIX}"))


def bundled_path(name: str) -> Path | None:
    """The bundled recipe called `name` (with or without .yaml), or None."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if not stem or "/" in stem or os.sep in stem:
        return None
    path = bundled_dir() / f"{stem}{SUFFIX}"
    return path if path.is_file() else None


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A recipe argument -> its file: an existing path first, then a bundled recipe's name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        from .run_folder import RECIPE_FILE

        if (path / RECIPE_FILE).is_file():
            raise UserError(f"recipe {name_or_path} is a run folder, not a recipe: its recipe is "
                            f"{path / RECIPE_FILE} (pass that; add --resume to continue the run)")
        raise UserError(f"recipe {name_or_path} is a folder, not a recipe: give a YAML file or a bundled "
                        f"recipe's name ({', '.join(bundled_names())})")
    bundled = bundled_path(str(name_or_path))
    if bundled is not None:
        return bundled
    raise UserError(f"recipe {name_or_path} does not exist: give a YAML file or a bundled recipe's name "
                    f"({', '.join(bundled_names())}; `orpo-dist recipes` describes them)")


def load_yaml(name_or_path: str | os.PathLike) -> dict[str, Any]:
    path = resolve(name_or_path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.constructor.ConstructorError as err:  # a tag such as !!python/object/apply: never constructed
        mark = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise UserError(f"recipe {path} holds a YAML tag orpo-dist will not construct{mark} "
                        f"({' '.join(str(err.problem).split())}): a recipe holds plain values (numbers, "
                        "strings, lists, mappings); remove the tag") from None
    except yaml.YAMLError as err:
        raise UserError(f"recipe {path} is not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError:
        raise UserError(f"recipe {path} is not UTF-8 text: is it a recipe? (save it as UTF-8)") from None
    if not isinstance(config, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of argument names to values")
    return config


class BundledRecipe(NamedTuple):
    name: str
    path: Path
    summary: str  # the header's first line, after "NAME:"
    hardware: str  # the header's "# Hardware:" line


def describe(name: str) -> BundledRecipe:
    """A bundled recipe's name, file and the two lines of its header comment that `orpo-dist
    recipes` shows (every bundled recipe has them; tests/test_recipe_files.py checks)."""
    path = bundled_path(name)
    if path is None:
        resolve(name)  # raises the "does not exist" error with the list of names
    header = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    summary = header[0].split(":", 1)[1].strip() if header and ":" in header[0] else ""
    hardware = next((line.split(":", 1)[1].strip() for line in header if line.startswith("Hardware:")), "")
    return BundledRecipe(path.stem, path, summary, hardware)


def copy(name: str, dest: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write bundled recipe `name` to `dest` (a file, or a folder to put NAME.yaml in; default: here)."""
    source = describe(name).path
    target = Path(dest).expanduser() if dest is not None else Path(source.name)
    if target.is_dir():
        target = target / source.name
    if target.exists() and not force:
        raise UserError(f"{target} exists already: choose another destination or pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: the folder {target.parent} does not exist")
    shutil.copyfile(source, target)
    return target

"""Reading a recipe file, with clear errors; importable without TRL (the planner uses it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist (recipes ship in launch/recipes/)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of argument names to values")
    return config

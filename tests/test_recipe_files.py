"""Bundled recipes by name: `orpo-dist recipes`, `orpo-dist recipes copy`, and --config NAME
everywhere a recipe is taken (train, launch, submit, plan --recipe)."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from orpo_dist.cli import main
from orpo_dist.errors import UserError
from orpo_dist.recipe import parse
from orpo_dist.recipe_files import bundled_dir, bundled_names, copy, describe, resolve

from .helpers import REPO

SHIPPED = sorted(p.stem for p in (REPO / "orpo_dist" / "recipes").glob("*.yaml"))


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args])
    return code, out.getvalue(), err.getvalue()


def test_every_shipped_recipe_is_bundled_and_described():
    assert bundled_names() == SHIPPED and len(SHIPPED) >= 6
    for name in SHIPPED:
        recipe = describe(name)
        assert recipe.path == bundled_dir() / f"{name}.yaml" and recipe.hardware and recipe.summary, name


def test_recipes_command_lists_them_with_their_hardware():
    code, out, _ = cli("recipes")
    assert code == 0
    for name in SHIPPED:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert describe(name).hardware.rstrip(".") in line
    assert "orpo-dist recipes copy NAME [DEST]" in out


def test_copy_writes_one_to_edit_and_never_overwrites_silently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("recipes", "copy", "llama3-8b-qlora")
    assert code == 0 and (tmp_path / "llama3-8b-qlora.yaml").read_text() == describe("llama3-8b-qlora").path.read_text()
    assert "orpo-dist train --config llama3-8b-qlora.yaml" in out
    code, _, err = cli("recipes", "copy", "llama3-8b-qlora")
    assert code == 2 and "exists already" in err and "--force" in err
    assert cli("recipes", "copy", "tiny", "llama3-8b-qlora.yaml", "--force")[0] == 0
    assert yaml.safe_load((tmp_path / "llama3-8b-qlora.yaml").read_text())["random_init"] is True
    (tmp_path / "mine").mkdir()
    assert copy("tiny", tmp_path / "mine") == tmp_path / "mine" / "tiny.yaml"
    code, _, err = cli("recipes", "copy", "nope")
    assert code == 2 and "recipe nope does not exist" in err and "tiny" in err


def test_a_path_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("tiny") == bundled_dir() / "tiny.yaml" == resolve("tiny.yaml")
    (tmp_path / "tiny.yaml").write_text("model_name_or_path: x\n")
    assert resolve("tiny.yaml").resolve() == (tmp_path / "tiny.yaml").resolve()  # the user's file
    with pytest.raises(UserError, match="does not exist"):
        resolve("../recipes/tiny")


def test_train_takes_a_bundled_name(tmp_path):
    recipe = parse(["--config", "tiny", "--output_dir", str(tmp_path)])
    assert recipe.model.random_init and recipe.training.max_steps == 24


def test_launch_takes_a_bundled_name():
    code, out, err = cli("launch", "--dry-run", "--strategy", "ddp", "--num-processes", "2", "tiny")
    assert code == 0, err
    assert f"--config {bundled_dir() / 'tiny.yaml'}" in out  # every rank reads the resolved file


def test_plan_takes_a_bundled_name():
    code, out, err = cli("plan", "--recipe", "llama3-8b-qlora", "--gpu-mem", "24")
    assert code == 0, err
    assert "method    qlora r=16 on q_proj,k_proj,v_proj,o_proj" in out

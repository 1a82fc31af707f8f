"""A wheel of the package, installed (not editable) in a fresh venv, launches from an empty folder:
the accelerate / DeepSpeed files and the recipes it names are inside the installed package.

The venv reuses the torch stack already installed (a .pth file points at this interpreter's
site-packages; .pth files found there are not run, so this checkout's editable install stays out).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .helpers import REPO

pytestmark = pytest.mark.slow


def run(*argv, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(map(str, argv))}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    clone = root / "clone"  # what a clean clone holds: the tracked files, as they are in this tree
    tracked = run("git", "ls-files", cwd=REPO).stdout.splitlines()
    for name in tracked:
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", root / "dist", clone, cwd=root)
    wheel = next((root / "dist").glob("orpo_dist-*.whl"))
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).stdout.strip())
    (site / "orpo_dist_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=root)
    empty = root / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    package = Path(run(python, "-c", "import orpo_dist, os; print(os.path.dirname(orpo_dist.__file__))",
                       cwd=empty, env=env).stdout.strip())
    assert package.is_relative_to(site), package  # the wheel's copy, not this checkout
    return venv / "bin" / "orpo-dist", package, empty, env


def test_launch_from_an_empty_folder_names_files_inside_the_installed_package(installed):
    orpo_dist, package, empty, env = installed
    out = run(orpo_dist, "launch", "--strategy", "zero3", "--num-processes", "2", "--dry-run", "tiny",
              cwd=empty, env=env).stdout
    line = next(line for line in out.splitlines() if "accelerate.commands.launch" in line)
    argv = shlex.split(line)
    named = {flag: Path(argv[argv.index(flag) + 1]) for flag in ("--config_file", "--deepspeed_config_file", "--config")}
    assert named["--config_file"] == package / "configs" / "accelerate" / "zero3.yaml"
    assert named["--deepspeed_config_file"] == package / "configs" / "deepspeed" / "zero3.json"
    assert named["--config"] == package / "recipes" / "tiny.yaml"
    for path in named.values():
        assert path.is_file(), path


def test_recipes_lists_every_bundled_recipe_and_copies_one(installed):
    orpo_dist, package, empty, env = installed
    out = run(orpo_dist, "recipes", cwd=empty, env=env).stdout
    shipped = sorted(p.stem for p in (REPO / "orpo_dist" / "recipes").glob("*.yaml"))
    assert sorted(p.stem for p in (package / "recipes").glob("*.yaml")) == shipped
    for name in shipped:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    run(orpo_dist, "recipes", "copy", "tiny", cwd=empty, env=env)
    assert (empty / "tiny.yaml").read_text() == (package / "recipes" / "tiny.yaml").read_text()
    assert (package / "configs" / "slurm" / "orpo.sbatch").is_file()

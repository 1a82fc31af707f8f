"""The layout's rules: the launching layer never reaches into training code, `--help` stays cheap,
and the README's Layout section matches the tree."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .helpers import REPO

PACKAGE = REPO / "orpo_dist"
# Training code the launching layer must not import, directly or through anything it imports.
TRAINING = ("orpo_dist.callbacks", "orpo_dist.train", "orpo_dist.model", "orpo_dist.orpo", "orpo_dist.bench.arm",
            "orpo_dist.outputs", "orpo_dist.data", "orpo_dist.eval", "orpo_dist.demo", "orpo_dist.report")
# ORPO's config is a recipe's training half: the launchers read recipes through it (it imports no trainer).
# The format table is the recipe's dataset_format choices (pure Python, like the errors it raises).
RECIPE_LEVEL = ("orpo_dist.orpo", "orpo_dist.orpo.config", "orpo_dist.data", "orpo_dist.data.formats",
                "orpo_dist.data.errors", "orpo_dist.data.hh")


def is_training(module: str) -> bool:
    return module not in RECIPE_LEVEL and any(module == t or module.startswith(t + ".") for t in TRAINING)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """orpo_dist modules imported anywhere in a file (lazy imports inside functions included)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` imports a module
    return {name for name in found if name.split(".")[0] == "orpo_dist"}


def source_of(module: str) -> Path | None:
    path = REPO.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_launching_layer_imports_no_training_code():
    start = sorted((PACKAGE / "launcher").rglob("*.py")) + [PACKAGE / "bench" / "cli.py", PACKAGE / "bench" / "mfu.py"]
    assert len(start) >= 8
    seen, chain = set(), {module_name(p): [module_name(p)] for p in start}
    todo = list(chain)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        assert not is_training(module), " -> ".join(chain[module])
        source = source_of(module)
        for imported in imports_of(source) if source else ():
            if source_of(imported) and imported not in chain:
                chain[imported] = [*chain[module], imported]
                todo.append(imported)
    assert "orpo_dist.recipe" in seen and "orpo_dist.run_folder" in seen and "orpo_dist.planner.shapes" in seen


PROBE = """
import contextlib, io, json, sys
from orpo_dist.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:  # --help
        code = stop.code
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                                   ("orpo_dist", "torch", "transformers", "trl"))}))
"""


def loaded_by(tmp_path, *argv: str) -> tuple[int, list[str]]:
    """(exit code, modules of orpo_dist / torch / transformers / trl loaded) of `orpo-dist ARGV`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"]


def test_launch_dry_run_loads_no_training_code(tmp_path):
    code, modules = loaded_by(tmp_path, "launch", "--dry-run", "--strategy", "zero3", "--num-processes", "2", "tiny")
    assert code == 0 and "orpo_dist.planner.shapes" in modules
    assert not [m for m in modules if is_training(m)], modules


def test_help_loads_neither_torch_nor_trl(tmp_path):
    for argv in (["--help"], ["recipes"], *([c, "--help"] for c in ("data", "demo", "launch", "submit", "plan"))):
        code, modules = loaded_by(tmp_path, *argv)
        assert code == 0 and not [m for m in modules if m.split(".")[0] != "orpo_dist"], (argv, modules)


def test_no_twin_folders_beside_the_package():
    for gone in ("launch", "ds_configs", "slurm", "orpo_dist/slurm", "orpo_dist/stop_protocol.py"):
        assert not (REPO / gone).exists(), gone


def test_readme_layout_section_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"(?<![\w/.-])((?:[\w.-]+/)+)(?![\w.-])", section))  # folders: tokens ending in /
    files = set(re.findall(r"(?<![\w/.-])([\w-]+\.(?:py|sh))\b", section))
    assert named and files, section
    for path in named:  # everything the section names exists
        assert (REPO / path).is_dir() or (PACKAGE / path).is_dir(), path
    for name in files:
        assert any(REPO.glob(f"*/{name}")) or any(PACKAGE.glob(f"*/{name}")), name
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top = {line.split("/", 1)[0] + "/" for line in tracked.splitlines() if "/" in line and not line.startswith(".")}
    inside = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    mentioned = {Path(p).parts[0] + "/" for p in named} | {p.rstrip("/").split("/")[-1] + "/" for p in named}
    assert not (top - mentioned), f"top-level folders the Layout section leaves out: {sorted(top - mentioned)}"
    assert not (inside - mentioned), f"orpo_dist/ folders the Layout section leaves out: {sorted(inside - mentioned)}"



def _imports_trl_experimental(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [n for n in names if n == "trl.experimental" or n.startswith("trl.experimental.")]
    return found


def test_no_module_imports_trls_experimental_trainers():
    """ORPO lives here: TRL's experimental ORPOTrainer is the tests' reference, never the runtime's.
    (That a train and an eval never load it: tests/test_eval.py; a 2-process launch:
    tests/test_distributed.py.)"""
    found = {str(p.relative_to(REPO)): m for p in PACKAGE.rglob("*.py") if (m := _imports_trl_experimental(p))}
    assert not found, found
    assert _imports_trl_experimental(REPO / "tests" / "orpo_step_cases.py")  # the check sees such an import


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_strategy_and_format_names_are_written_only_in_their_tables():
    """A strategy or data format is one entry in its table (strategies.py; data/formats.py): code
    elsewhere asks the entry (its engine, what it shards, the format's columns) or lists the table,
    never writes a name (`if strategy == "zero3"`, `choices=["auto", "standard", ...]`), or adding
    one would mean finding every such place. Docstrings may name them."""
    from orpo_dist.data.formats import FORMATS
    from orpo_dist.strategies import STRATEGIES

    names = set(STRATEGIES) | set(FORMATS)
    homes = {PACKAGE / "strategies.py", PACKAGE / "data" / "formats.py"}
    # `orpo-dist demo --data hh` names a bundled data set (HH-RLHF), not the row format.
    other_meanings = {("demo.py", "hh")}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in homes:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in names and id(node) not in docs
                    and (str(path.relative_to(PACKAGE)), node.value) not in other_meanings):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} writes {node.value!r}")
    assert not found, found

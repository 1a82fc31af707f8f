"""benchmarks/gpu_check.sh, as far as a CPU can take it: its refusals (no GPU, an image without the
stack), the wheelhouse's choice of what to bring, and a rehearsal of its runs on the CPU
that goes through the same commands and the same table as on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _check(*args, python=sys.executable, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": str(python)}, stdin=subprocess.DEVNULL)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_refuses_a_machine_without_cuda_and_says_what_to_do(tmp_path):
    result = _check("--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("gpu_check: error: this machine cannot run the GPU check")
    assert "no CUDA GPU is visible" in result.stderr and "--cpu-rehearsal" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out" / "table.md").exists()


def test_gpu_check_lists_everything_an_image_lacks_at_once(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = _check("--out", tmp_path / "out", python=bare / "bin" / "python")
    assert result.returncode == 2, result.stderr
    assert "torch cannot be imported" in result.stderr
    missing = next(line for line in result.stderr.splitlines() if "missing from this Python:" in line)
    for dist in ("trl", "deepspeed", "bitsandbytes", "datasets", "transformers", "peft", "accelerate"):
        assert f" {dist}" in missing
    assert "build-wheelhouse WHEELHOUSE_DIR --for" in result.stderr and "Traceback" not in result.stderr
    # The image's package list, for build-wheelhouse --have, is left where the refusal says.
    assert (tmp_path / "out" / "image-packages.txt").exists()


def test_gpu_check_refuses_a_wheelhouse_without_wheels_before_making_a_venv(tmp_path):
    gpu_check = _load("gpu_check")
    (tmp_path / "wheels").mkdir()
    with pytest.raises(gpu_check.Refusal, match="holds no wheels: build one with"):
        gpu_check.install_wheelhouse(sys.executable, tmp_path / "wheels", tmp_path / "venv", ["trl"])
    assert not (tmp_path / "venv").exists()


def test_wheelhouse_brings_what_the_image_lacks_and_leaves_torch_and_the_rest_out():
    wheelhouse = _load("wheelhouse")
    version = "3.11"
    everything = {wheelhouse.canonical(d.metadata["Name"]) for d in metadata.distributions()}
    # An image with all of orpo-dist's venv but trl: the wheelhouse is trl alone, at the version tested here.
    assert wheelhouse.wanted(["trl"], everything - {"trl"}, version) == {"trl": metadata.version("trl")}
    # An image with nothing: torch and what torch requires never travel; trl's own needs do.
    alone = wheelhouse.wanted(["trl"], set(), version)
    assert "torch" not in alone and "sympy" not in alone and "networkx" not in alone
    assert {"trl", "transformers", "accelerate", "datasets"} <= set(alone)


def test_wheelhouse_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = _check("build-wheelhouse", tmp_path)
    assert result.returncode == 2 and "is not an empty folder" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_cpu_rehearsal_runs_the_checks_and_prints_one_table(tmp_path):
    out = tmp_path / "out"
    result = _check("--cpu-rehearsal", "--out", out, "--batch", "4", "--max_length", "128", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    table = (out / "table.md").read_text()
    assert table.strip() in result.stdout and table.startswith("GPU check on CPU rehearsal")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| check")}
    bench = rows["fast vs stock bench"]
    assert bench[0] == "pass" and "x pairs/s" in bench[1] and "max |loss diff|" in bench[1]
    assert rows["QLoRA 4-bit, 2 steps"][0] == "skipped"
    smoke = rows["FSDP2 smoke, 2 process(es), 2 steps"]
    assert smoke[0] == "pass" and "2/2 steps" in smoke[1]
    assert rows["ZeRO-3 smoke, 2 process(es), 2 steps"][0] == rows["FSDP2 QLoRA smoke, 2 process(es), 2 steps"][0] \
        == "skipped"

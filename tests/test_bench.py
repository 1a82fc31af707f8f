"""`orpo-dist bench` end to end on the tiny recipe: both arms run, take turns, and report."""

from __future__ import annotations

import json

import pytest

from .helpers import TINY_RECIPE, run_case, run_cli

pytestmark = pytest.mark.slow


def test_bench_reports_both_arms(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--config", TINY_RECIPE, "--steps", "2", "--warmup", "1", "--json", out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for arm in ("stock", "fast"):
        assert {"pairs_per_s", "s_per_step", "peak_gib", "unique_tokens_per_s"} <= set(figures[arm])
        assert figures[arm]["pairs_per_s"] > 0 and figures[arm]["peak_gib"] > 0
        assert [s["pairs"] for s in figures[arm]["steps"]] == [4, 4]  # the recipe's batch, per measured step
    # the same pairs are counted the same way for both arms
    assert [s["unique_tokens"] for s in figures["stock"]["steps"]] == [s["unique_tokens"] for s in figures["fast"]["steps"]]
    assert figures["max_abs_loss_diff"] < 1e-5
    # MFU: the same model FLOPs for both arms (ORPO's work, not what an arm computes on top), so
    # their MFU ratio is their speed ratio; on a CPU, against the fp32 matmul probe of this run.
    assert "fp32 matmul probe" in figures["peak_flops"]["source"] and figures["peak_flops"]["flops_per_s"] > 1e9
    for arm in ("stock", "fast"):
        assert 0 < figures[arm]["mfu"] < 1
    assert figures["fast"]["mfu"] / figures["stock"]["mfu"] == pytest.approx(
        figures["fast"]["unique_tokens_per_s"] / figures["stock"]["unique_tokens_per_s"])
    assert "MFU %" in result.stdout
    assert figures["speedup"] == pytest.approx(figures["fast"]["pairs_per_s"] / figures["stock"]["pairs_per_s"])
    assert "fast/stock" in result.stdout and "speedup" in result.stdout


def test_bench_refuses_a_bad_layout(capsys):
    status, _, err = run_case(["bench", "--strategy", "single", "--num-processes", "2"], capsys)
    assert status == 2 and "Traceback" not in err
    assert "strategy single runs one process, not 2" in err

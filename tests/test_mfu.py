"""MFU's model FLOPs (orpo_dist/bench/mfu.py) against a hand count of a known model."""

from __future__ import annotations

import pytest

from orpo_dist.bench.mfu import GPU_BF16_PEAK, model_flops
from orpo_dist.planner.shapes import resolve_shape


def test_model_flops_are_six_per_non_embedding_parameter_and_token_plus_the_head_at_the_targets():
    shape = resolve_shape("smollm2-135m-instruct")  # tied head: 134.5M params, 28.3M of them the embedding
    body = 134_515_008 - 49_152 * 576
    # 2 pairs of 100 unique tokens: the head runs at 198 positions (each pair's first predicts nothing)
    assert model_flops(shape, 200, 2) == pytest.approx(6 * body * 200 + 6 * 576 * 49_152 * 198)
    untied = resolve_shape("meta-llama/Meta-Llama-3-8B")
    assert untied.lm_head_params == 128_256 * 4096  # counted as the head, not as the body
    assert model_flops(untied, 1, 0) == pytest.approx(6 * (untied.total_params - 2 * 128_256 * 4096) + 6 * 4096 * 128_256)


def test_gpu_table_matches_the_most_specific_name_first():
    names = [key for key, _ in GPU_BF16_PEAK]
    assert names.index("H100 PCIe") < names.index("H100") and names.index("GH200") < names.index("H200")
    assert names.index("L40S") < names.index("L4")

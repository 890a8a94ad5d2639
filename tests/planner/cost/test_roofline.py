"""Tests for seesaw.planner.cost.roofline.kernel_time_s: the optional calibrated terms, by hand."""
from __future__ import annotations

import pytest

from seesaw.planner.cost.roofline import kernel_time_s
from seesaw.planner.hardware import GPUSpec

# 100 GFLOP/s and 10 GB/s achieved, so compute and memory times are easy to write down
BASE = dict(name="t", memory_gb=1, bf16_tflops=0.1, memory_gb_per_s=10, matmul_efficiency=1.0,
            memory_efficiency=1.0)


def test_plain_roofline_is_the_max_of_compute_and_memory():
    gpu = GPUSpec(**BASE)
    assert kernel_time_s(1e9, 1e8, gpu, gemm_rows=64) == pytest.approx(max(1e9 / 1e11, 1e8 / 1e10))


def test_pack_ratio_charges_gemms_of_two_or_more_rows_only():
    """A GEMV (one row) streams its weights once; a GEMM of 2+ rows moves (1 + ratio) times its bytes."""
    gpu = GPUSpec(**BASE, matmul_pack_ratio=0.5, compute_memory_overlap=0.0)
    nbytes, flops = 3e6, 2e6
    one = kernel_time_s(flops, nbytes, gpu, gemm_rows=1)
    two = kernel_time_s(flops, nbytes, gpu, gemm_rows=2)
    assert one == pytest.approx(flops / 1e11 + nbytes / 1e10)
    assert two == pytest.approx(flops / 1e11 + 1.5 * nbytes / 1e10)
    # not a GEMM (elementwise, attention): no packing
    assert kernel_time_s(flops, nbytes, gpu) == pytest.approx(one)
    assert kernel_time_s(flops, nbytes, gpu.model_copy(update={"matmul_pack_ratio": 0.0}), gemm_rows=2) == \
        pytest.approx(one)


def test_half_rows_and_overlap():
    gpu = GPUSpec(**BASE, matmul_half_rows=4, compute_memory_overlap=0.25)
    c = 1e9 / (1e11 * 4 / (4 + 4))  # F_eff * r / (r + n_half) at r = 4
    m = 1e8 / 1e10
    assert kernel_time_s(1e9, 1e8, gpu, gemm_rows=4) == pytest.approx(max(c, m) + 0.75 * min(c, m))

"""FP8 checkpoints and KV cache in the cost model: real bytes, the FP8 tensor-core rate where the GPU has one
(H100, H200, L40S, L4) and the bf16 rate where it has none (A100, A10), and plans of the shipped FP8 Llama."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.ir.ops import PassShape
from seesaw.planner.cost.model import CostModel
from seesaw.planner.cost.roofline import compute_op_s, kernel_time_s
from seesaw.planner.hardware import load_cluster
from seesaw.planner.hardware.catalog import load_catalog
from seesaw.planner.optimize.solve import plan
from seesaw.planner.optimize.space import SearchOptions
from seesaw.planner.workload import load_workload

FP8 = load_model_config("llama-3.1-70b-fp8")
BF16 = load_model_config("llama-3-70b")  # the same tensors in bf16 (Llama 3 and 3.1 differ in RoPE and context)
WORKLOAD = load_workload("random:512:128:64")

# dense FP8 TFLOP/s from the datasheets (half the printed sparse figure; 0 = no FP8 tensor cores)
DATASHEET_FP8 = {"H100-SXM": 1979, "H100-PCIe": 1513, "H200-SXM": 1979, "L40S": 733, "L4": 242.5,
                 "A10": 0, "A100-SXM-40GB": 0, "A100-SXM-80GB": 0, "A100-PCIe-40GB": 0, "A100-PCIe-80GB": 0}


def test_catalog_fp8_figures_are_dense_and_sourced():
    cat = load_catalog()
    for name, fp8 in DATASHEET_FP8.items():
        gpu = cat[name]
        assert gpu.fp8_tflops == fp8, name
        assert gpu.source.get("fp8", "").strip(), name
        if fp8:
            assert "sparsity" in gpu.source["fp8"] and fp8 == pytest.approx(2 * gpu.bf16_tflops, rel=0.03)
        else:
            assert "bf16" in gpu.source["fp8"] and gpu.achievable_fp8_flops == gpu.achievable_flops
    assert cat["cpu"].fp8_tflops == 0 and "fp8" in cat["cpu"].source


@pytest.mark.parametrize("gpu", sorted(DATASHEET_FP8))
def test_fp8_gemm_rate_by_gpu(gpu):
    """A compute-bound FP8 GEMM runs at the FP8 tensor-core rate where there is one, else at the bf16 rate."""
    spec = load_catalog()[gpu].model_copy(update={"matmul_half_rows": 0.0, "compute_memory_overlap": 1.0})
    flops, nbytes = 2.0 * 8192 * 8192 * 8192, 8192 * 8192  # 8192 rows: compute-bound (the plain roofline)
    bf16, fp8 = kernel_time_s(flops, nbytes, spec, 8192), kernel_time_s(flops, nbytes, spec, 8192, fp8=True)
    expect = DATASHEET_FP8[gpu] / spec.bf16_tflops if DATASHEET_FP8[gpu] else 1.0
    assert bf16 / fp8 == pytest.approx(expect, rel=1e-6)


@pytest.mark.parametrize("gpu, faster", [("H100-SXM", True), ("L40S", True), ("L4", True), ("A100-SXM-80GB", False),
                                         ("A10", False)])
def test_quantized_linear_prefill_and_decode(gpu, faster):
    """Prefill (compute-bound): FP8 GEMMs about twice as fast on FP8 tensor cores, as fast as bf16 on Ampere
    (weight-only, dequantized in the kernel). Decode (memory-bound): about half the time on every GPU, since the
    weights are half the bytes; the op's fixed overhead keeps the ratio under 2)."""
    cl = load_cluster(f"8x{gpu}")
    q, b = CostModel(FP8, cl, WORKLOAD).tp_graph(8), CostModel(BF16, cl, WORKLOAD).tp_graph(8)
    prefill, decode = (PassShape.prefill(16, 1024),), (PassShape.decode(1, 512),)
    qo, bo = q.op("layers.3.gate_proj"), b.op("layers.3.gate_proj")
    ratio = compute_op_s(bo, prefill, 8, cl) / compute_op_s(qo, prefill, 8, cl)
    assert ratio > 1.6 if faster else ratio == pytest.approx(1.0, rel=0.02)
    assert compute_op_s(bo, decode, 8, cl) / compute_op_s(qo, decode, 8, cl) > 1.6


def test_memory_terms_use_real_bytes_and_the_kv_dtype():
    cl = load_cluster("8xH100-SXM")
    q, b = CostModel(FP8, cl, WORKLOAD), CostModel(BF16, cl, WORKLOAD)
    assert 0.5 < q.memory_terms(8).layer_weight_bytes / b.memory_terms(8).layer_weight_bytes < 0.501
    assert q.memory_terms(8).first_weight_bytes == b.memory_terms(8).first_weight_bytes  # embedding: bf16
    assert 0.51 < q.model_weight_bytes / b.model_weight_bytes < 0.53
    kv8 = CostModel(BF16.model_copy(update={"kv_cache_dtype": "fp8_e4m3"}), cl, WORKLOAD)
    assert kv8.kv_bytes_per_token * 2 == b.kv_bytes_per_token == 80 * 2 * 8 * 128 * 2
    assert kv8.memory_terms(8).kv_bytes_per_token_layer * 2 == b.memory_terms(8).kv_bytes_per_token_layer


@pytest.mark.parametrize("cluster, layout", [("8xH100-SXM", "tp8"), ("8xL40S", "tp4pp2"), ("8xA10", "tp4pp2")])
def test_fp8_llama_70b_plans_with_less_memory_than_bf16(cluster, layout):
    cl = load_cluster(cluster)
    pinned = SearchOptions(prefill=Layout.parse(layout), decode=Layout.parse(layout), static=True)
    fp8 = plan(FP8, cl, WORKLOAD, pinned, simulate=False)
    bf16 = plan(BF16, cl, WORKLOAD, pinned, simulate=False)
    assert fp8.prediction.memory.weights_bytes < 0.55 * bf16.prediction.memory.weights_bytes
    assert fp8.gpu_kv_tokens > bf16.gpu_kv_tokens  # the freed memory holds KV cache
    assert fp8.prediction.tokens_per_s > bf16.prediction.tokens_per_s


def test_fp8_llama_70b_plans_unpinned_on_8xh100():
    decision = plan(FP8, load_cluster("8xH100-SXM"), WORKLOAD, simulate=False)
    mem = decision.prediction.memory
    assert mem.device_total_bytes <= mem.capacity_bytes and decision.prediction.tokens_per_s > 0

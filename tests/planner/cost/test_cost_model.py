"""The cost model against hand calculations from DESIGN.md section 4."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import NS, CostModel, decode_part, prefill_part
from seesaw.planner.hardware import build_cluster, load_cluster
from seesaw.planner.optimize.terms import decode_terms, host_buffer_max_tokens, prefill_terms
from seesaw.planner.workload import load_workload


@pytest.fixture(scope="module")
def cost():
    """The A100's catalog figures as a plain roofline: the fitted fixed costs, partial overlap and measured
    collective curves removed, so that hand calculations of DESIGN.md section 4 apply exactly."""
    gpu = load_cluster("8xA100-SXM-80GB").gpu.model_copy(update={
        "op_overhead_us": 0.0, "elementwise_overhead_us": 0.0, "attention_overhead_us": 0.0,
        "attention_seq_overhead_us": 0.0, "compute_memory_overlap": 1.0, "allreduce_us": {}, "allgather_us": {}})
    return CostModel(load_model_config("llama-2-70b"), build_cluster(gpu, 8, "test", "test"), load_workload("sharegpt"))


def test_decode_layer_is_memory_bound(cost):
    """Small-batch decode reads each layer's weights once: time ~ weight bytes / achievable bandwidth."""
    gpu = cost.cluster.gpu
    for tp in (1, 2, 8):
        sc = cost.stage_cost(Layout(8 // tp, tp, 1), (decode_part(cost.replica_work(8 // tp), 1),))
        weights = cost.memory_terms(tp).layer_weight_bytes
        expect = weights / gpu.achievable_memory_bytes_per_s
        comm = 2 * cost.cluster.allreduce_s(1 * 8192 * gpu.dtype_bytes, tp) if tp > 1 else 0.0
        assert sc.layer_ns / NS == pytest.approx(expect + comm, rel=0.05)


def test_prefill_layer_is_compute_bound(cost):
    """Large prefill batches: time ~ 2 * params * tokens / (tp * achievable FLOP/s) (+ attention)."""
    gpu = cost.cluster.gpu
    work = cost.replica_work(8)
    tokens = 8192
    sc = cost.stage_cost(Layout(8, 1, 1), (prefill_part(work, tokens),))
    params = cost.graph.layer_weight_bytes(0) / cost.cfg.dtype_bytes
    linear_s = 2 * params * tokens / gpu.achievable_flops
    assert sc.layer_ns / NS > linear_s
    assert sc.layer_ns / NS < 1.3 * linear_s  # attention adds a little at ShareGPT lengths


def test_tp_divides_weights_and_adds_two_all_reduces_per_layer(cost):
    m1, m4 = cost.memory_terms(1), cost.memory_terms(4)
    assert m4.layer_weight_bytes == pytest.approx(m1.layer_weight_bytes / 4, rel=0.001)
    assert m4.kv_bytes_per_token_layer * 4 == m1.kv_bytes_per_token_layer
    work = cost.replica_work(2)
    shape = (decode_part(work, 64),)
    t1 = cost.stage_cost(Layout(8, 1, 1), shape).layer_ns
    t4 = cost.stage_cost(Layout(2, 4, 1), shape).layer_ns
    ar = 2 * cost.cluster.allreduce_s(64 * 8192 * 2, 4)
    assert t4 / NS > ar and t4 < t1


def test_stage_time_is_linear_in_layers(cost):
    t = prefill_terms(cost, Layout(1, 1, 8), 4096)
    st = t.stage
    assert st.stage_ns(3, 10) - st.stage_ns(3, 9) == st.layer_ns
    assert st.stage_ns(0, 10) - st.stage_ns(3, 10) == st.first_ns  # embedding on stage 0
    assert st.stage_ns(7, 10) - st.stage_ns(3, 10) == st.last_ns - st.send_ns[3]
    assert t.time_ns((10,) * 8) == t.coef * max(st.stage_ns(s, 10) for s in range(8))


def test_decode_kv_and_memory_terms(cost):
    t = decode_terms(cost, Layout(1, 8, 1), 256)
    work = cost.replica_work(1)
    assert t.kv_tokens == pytest.approx(256 * work.decode_context_len, abs=1)
    # Llama-2-70B: 8 KV heads x 128 dims x K and V x 2 bytes = 4096 B per token-layer, / tp 8
    assert t.kv_layer_bytes == t.kv_tokens * 512


def test_host_buffer_bound(cost):
    kv = cost.kv_bytes_per_token
    assert kv == 2 * 8 * 128 * 2 * 80
    static_h = host_buffer_max_tokens(cost, 1, resharding=False)
    reshard_h = host_buffer_max_tokens(cost, 1, resharding=True)
    assert static_h == cost.host_capacity_bytes // kv
    assert reshard_h == (cost.host_capacity_bytes - 2 * cost.model_weight_bytes) // kv
    # dp replicas on one node share its host memory
    assert host_buffer_max_tokens(cost, 2, resharding=False) == static_h // 2


def test_expert_parallel_layouts_cost_the_busiest_group_and_search_one_ep_per_phase():
    """Qwen3-235B-A22B-FP8 on 8xH100: TP 8 needs EP (FP8 blocks), so every tp8 layout the search sees has an ep;
    at tp4, where TP alone splits the experts, decode keeps ep 1 (the EP kernel's fitted overhead outweighs the
    rows it saves at 128 sequences). EP holds the same bytes per rank as TP and its prefill layer is slower;
    every valid ep stays a layout a user may pin."""
    from seesaw.ir.ops import OpKind  # noqa: PLC0415
    from seesaw.planner.cost.moe_balance import ep_imbalance  # noqa: PLC0415
    from seesaw.planner.cost.roofline import compute_op_s  # noqa: PLC0415

    cost = CostModel(load_model_config("qwen3-235b-a22b-fp8"), load_cluster("8xH100-SXM"), load_workload("sharegpt:50"))
    assert {str(lay) for lay in cost.layouts(1) if lay.tp == 8} == {"tp8ep2", "tp8ep4", "tp8ep8"}
    for phase in ("prefill", "decode", "static"):
        searched = cost.candidate_layouts(1, phase)
        assert len(searched) == len({(lay.tp, lay.pp) for lay in cost.layouts(1)})  # one ep per (dp, tp, pp)
        assert all(lay.ep > 1 for lay in searched if lay.tp == 8)
    assert "tp4pp2" in {str(lay) for lay in cost.candidate_layouts(1, "decode")}
    with pytest.raises(ValueError):
        cost.candidate_layouts(1, "mixed")
    assert cost.memory_terms(4, 4).layer_weight_bytes == cost.memory_terms(4, 1).layer_weight_bytes
    part = prefill_part(cost.replica_work(1), 8192)
    t = {ep: compute_op_s(next(op for op in cost.tp_graph(4, ep).layer_ops(0) if op.kind is OpKind.MOE_EXPERTS),
                          [part], 4, cost.cluster) for ep in (1, 4)}
    assert t[4] > t[1]  # the busiest group's excess and the measured expert-parallel kernel rate
    assert ep_imbalance(128, 4) > 1 and cost.cluster.gpu.moe_ep_efficiency < 1


def test_the_search_picks_expert_parallelism_where_its_terms_win():
    """With an EP kernel as fast as the TP one (moe_ep_efficiency 1, no extra overhead), a Qwen3-30B-A3B decode
    step at tp4 gathers a quarter of the rows under ep4 and nothing else changes in memory-bound decode: the
    decode search takes ep4, where the measured terms keep ep 1."""
    cluster = load_cluster("8xH100-SXM")
    gpu = cluster.gpu.model_copy(update={"moe_ep_efficiency": 1.0, "moe_ep_overhead_us": 0.0})
    fast_ep = CostModel(load_model_config("qwen3-30b-a3b"), build_cluster(gpu, 8, "test", "test"),
                        load_workload("sharegpt:50"))
    decode = {str(lay) for lay in fast_ep.candidate_layouts(1, "decode")}
    assert "tp4ep4pp2" in decode and "tp4pp2" not in decode
    measured = CostModel(load_model_config("qwen3-30b-a3b"), cluster, load_workload("sharegpt:50"))
    assert "tp4pp2" in {str(lay) for lay in measured.candidate_layouts(1, "decode")}

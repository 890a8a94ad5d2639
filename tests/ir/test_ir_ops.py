"""Per-op FLOPs, bytes and message sizes against hand computation (DESIGN.md section 4)."""
import pytest

from seesaw.ir import OpKind, PassShape, build_graph, load_model_config


@pytest.fixture(scope="module")
def l70():
    return build_graph(load_model_config("llama-2-70b"))


def test_pass_shape():
    pre, dec = PassShape.prefill(4, 512), PassShape.decode(32, 1000)
    assert pre.tokens == 2048 and (pre.query_tokens, pre.context_len) == (512, 512)
    assert dec.tokens == 32 and (dec.query_tokens, dec.context_len) == (1, 1000)
    with pytest.raises(ValueError):
        PassShape(1, 10, 5)


def test_linear_flops_and_bytes(l70):
    q = l70.op("layers.3.q_proj")
    assert q.kind is OpKind.LINEAR and q.layer == 3
    shape = PassShape.prefill(2, 100)  # 200 tokens
    assert q.flops(shape, tp=1) == 2 * 200 * 8192 * 8192
    assert q.flops(shape, tp=4) == 2 * 200 * 8192 * 8192 / 4
    down = l70.op("layers.3.down_proj")  # row-parallel: input dim split
    assert down.flops(shape, tp=8) == 2 * 200 * 28672 * 8192 / 8
    w_bytes = 8192 * 8192 * 2 // 4
    assert q.weight_bytes(4, 2) == w_bytes
    assert q.device_bytes(shape, 4, 2) == w_bytes + 200 * (8192 + 8192 // 4) * 2
    k = l70.op("layers.3.k_proj")  # 8 KV heads of 128: tp 16 replicates each head on 2 ranks
    assert k.flops(shape, tp=8) == 2 * 200 * 8192 * 128
    assert k.flops(shape, tp=16) == 2 * 200 * 8192 * 128
    assert k.weight_bytes(16, 2) == 128 * 8192 * 2


def test_attention_flops_prefill_decode_chunk(l70):
    at = l70.op("layers.0.attention")
    d, hq = 128, 64
    s = 300
    # causal prefill: query j sees j+1 keys -> sum = s(s+1)/2 per head, 4*d FLOPs each (QK^T and PV)
    assert at.flops(PassShape.prefill(3, s), tp=1) == 4 * d * hq * 3 * s * (s + 1) / 2
    assert at.flops(PassShape.prefill(3, s), tp=4) == 4 * d * (hq / 4) * 3 * s * (s + 1) / 2
    assert at.flops(PassShape.decode(16, 1000), tp=2) == 4 * d * 32 * 16 * 1000
    # chunked prefill: 10 new tokens after 90 cached -> keys 91..100
    assert at.flops(PassShape(1, 10, 100), tp=1) == 4 * d * hq * sum(range(91, 101))


def test_attention_bytes(l70):
    at = l70.op("layers.0.attention")
    dec = PassShape.decode(16, 1000)
    kv = 16 * 1000 * 2 * (8 // 2) * 128 * 2  # tp 2 -> 4 KV heads per rank
    qo = 2 * 16 * (64 // 2) * 128 * 2
    assert at.device_bytes(dec, 2, 2) == kv + qo
    # tp 16 > 8 KV heads: each rank still reads one whole head
    assert at.device_bytes(dec, 16, 2) == 16 * 1000 * 2 * 1 * 128 * 2 + 2 * 16 * 4 * 128 * 2
    assert at.weight_bytes(1, 2) == 0


def test_lm_head_runs_on_last_token(l70):
    head = l70.op("lm_head")
    shape = PassShape.prefill(4, 512)
    assert head.tokens(shape) == 4
    assert head.flops(shape, tp=1) == 2 * 4 * 8192 * 32000
    assert head.flops(shape, tp=8) == 2 * 4 * 8192 * 4000
    assert head.weight_bytes(8, 2) == 4000 * 8192 * 2


def test_comm_bytes():
    from seesaw.ir import Op
    shape = PassShape.prefill(2, 128)
    ar = Op("ar", OpKind.ALL_REDUCE, 0, (), {"hidden": 4096})
    assert ar.comm_bytes(shape, 2) == 256 * 4096 * 2 and ar.flops(shape, 8) == 0
    assert Op("s", OpKind.SEND, 0, (), {"hidden": 4096}).comm_bytes(shape, 2) == 256 * 4096 * 2
    ag = Op("ag", OpKind.ALL_GATHER, None, (), {"vocab": 32000})
    assert ag.comm_bytes(shape, 2) == 2 * 32000 * 2
    assert ar.is_comm and not Op("x", OpKind.RMSNORM, 0, (), {"hidden": 1, "heads": 1}).is_comm


def test_compute_ops_have_no_comm_and_elementwise_costs(l70):
    shape = PassShape.decode(8, 50)
    for op in l70.ops():
        assert op.comm_bytes(shape, 2) == 0
        assert op.flops(shape, 1) >= 0 and op.device_bytes(shape, 1, 2) > 0
    res = l70.op("layers.1.attn_residual")
    assert res.device_bytes(shape, 4, 2) == 3 * 8 * 8192 * 2  # not split by TP
    act = l70.op("layers.1.silu_mul")
    assert act.device_bytes(shape, 4, 2) == 3 * 8 * (28672 // 4) * 2


def test_layer_sum_matches_design_decode_formula(l70):
    """Linear FLOPs of one layer = 2 b W (DESIGN.md section 4, decode column)."""
    shape = PassShape.decode(32, 2048)
    linear = sum(op.flops(shape, 1) for op in l70.layer_ops(5) if op.kind is OpKind.LINEAR)
    params = sum(w.numel for op in l70.layer_ops(5) if op.kind is OpKind.LINEAR for w in op.weights)
    assert linear == 2 * 32 * params


def test_mixture_of_experts_costs_the_routed_experts_only():
    """Mixtral: a token runs top-2 of 8 experts (twice a dense FFN of the expert width); one decode token reads 2
    experts' weights, 64 tokens all 8; under tp2 a rank does half the FLOPs and reads half of each expert."""
    from seesaw.ir import OpKind, PassShape, build_graph, load_model_config  # noqa: PLC0415

    cfg = load_model_config("mixtral-8x7b")
    layer = build_graph(cfg).layer_ops(0)
    experts = next(op for op in layer if op.kind is OpKind.MOE_EXPERTS)
    router = next(op for op in layer if op.kind is OpKind.ROUTER)
    h, ffn = cfg.hidden_size, cfg.intermediate_size
    one = PassShape.decode(1, 100)
    assert experts.flops(one) == pytest.approx(2 * 6 * h * ffn, rel=1e-3)
    assert experts.flops(one, tp=2) == pytest.approx(experts.flops(one) / 2, rel=1e-3)
    expert_bytes = 3 * h * ffn * cfg.dtype_bytes
    assert experts.device_bytes(one) == pytest.approx(2 * expert_bytes, rel=1e-3)
    assert experts.device_bytes(PassShape.decode(64, 100)) == pytest.approx(8 * expert_bytes, rel=0.01)
    assert experts.device_bytes(one, tp=2) == pytest.approx(expert_bytes, rel=1e-3)
    assert experts.expert_rows(PassShape.prefill(1, 4096)) == pytest.approx(4096 * 2 / 8)
    assert router.flops(one) == pytest.approx(8 * (2 * h + 5))


def test_expert_parallel_experts_do_a_groups_share_at_the_whole_width():
    """Qwen3-30B-A3B at tp4: ep4 (whole experts, a quarter of them per rank) does the same balanced FLOPs and
    reads the same expert bytes as ep1 (a quarter of every expert), but gathers only its group's rows."""
    from seesaw.ir import OpKind, PassShape, build_graph, load_model_config  # noqa: PLC0415
    from seesaw.ir.passes import apply_tp  # noqa: PLC0415

    g = build_graph(load_model_config("qwen3-30b-a3b"))
    tp_op, ep_op = (next(op for op in apply_tp(g, 4, ep).layer_ops(0) if op.kind is OpKind.MOE_EXPERTS)
                    for ep in (1, 4))
    assert ep_op.dims["ep"] == 4 and "ep" not in tp_op.dims
    assert ep_op.weight_bytes(4) == tp_op.weight_bytes(4)
    for shape in (PassShape.decode(8, 500), PassShape.prefill(2, 2048)):
        assert ep_op.flops(shape, 4) == pytest.approx(tp_op.flops(shape, 4), rel=0.01)  # combine: own pairs only
        assert ep_op.device_bytes(shape, 4) < tp_op.device_bytes(shape, 4)
        assert ep_op.expert_rows(shape) == tp_op.expert_rows(shape)
    one = PassShape.decode(1, 100)  # one token: 8 experts touched, 2 of them (expected) in this rank's group
    expert_bytes = 3 * 2048 * 768 * 2
    assert ep_op.device_bytes(one, 4) == pytest.approx(8 / 4 * expert_bytes, rel=0.01)

"""Graph structure, HF weight names and sizes."""
import networkx as nx
import pytest

from seesaw.ir import OpKind, ShardRule, build_graph, load_model_config


@pytest.fixture(scope="module")
def smol():
    return build_graph(load_model_config("SmolLM2-135M"))


def test_layer_chain_and_residual_edges(smol):
    g = smol.g
    assert nx.is_directed_acyclic_graph(g)
    assert list(nx.topological_sort(g))[0] == "embed_tokens"
    names = [op.name for op in smol.layer_ops(2)]
    assert names == [f"layers.2.{n}" for n in (
        "input_layernorm", "q_proj", "k_proj", "v_proj", "rope", "attention", "o_proj", "attn_residual",
        "post_attention_layernorm", "gate_proj", "up_proj", "silu_mul", "down_proj", "mlp_residual")]
    assert set(g.successors("layers.1.mlp_residual")) == {"layers.2.input_layernorm", "layers.2.attn_residual"}
    assert set(g.predecessors("layers.2.mlp_residual")) == {"layers.2.attn_residual", "layers.2.down_proj"}
    assert set(g.predecessors("layers.2.attention")) == {"layers.2.rope", "layers.2.v_proj"}
    assert set(g.successors("embed_tokens")) == {"layers.0.input_layernorm", "layers.0.attn_residual"}
    assert [op.name for op in smol.pre_ops()] == ["embed_tokens"]
    assert [op.name for op in smol.post_ops()] == ["norm", "lm_head"]
    assert list(g.predecessors("norm")) == ["layers.29.mlp_residual"]
    assert len(smol.ops()) == 1 + 30 * 14 + 2


def test_tied_lm_head_counted_once(smol):
    head = smol.op("lm_head")
    assert head.weights[0].name == "model.embed_tokens.weight"
    names = [w.name for w in smol.weights()]
    assert names.count("model.embed_tokens.weight") == 1 and "lm_head.weight" not in names
    assert smol.num_parameters() == 134_515_008
    assert smol.weight_bytes() == 134_515_008 * 2


def test_weight_names_shapes_rules():
    g = build_graph(load_model_config("llama-2-70b"))
    w = {x.name: x for x in g.weights()}
    assert w["model.layers.7.self_attn.q_proj.weight"].shape == (8192, 8192)
    assert w["model.layers.7.self_attn.k_proj.weight"].shape == (1024, 8192)
    assert w["model.layers.7.self_attn.k_proj.weight"].shard is ShardRule.KV_HEAD
    assert w["model.layers.7.self_attn.k_proj.weight"].unit == 128
    assert w["model.layers.7.self_attn.o_proj.weight"].shard is ShardRule.ROW
    assert w["model.layers.7.mlp.down_proj.weight"].shape == (8192, 28672)
    assert w["model.layers.7.input_layernorm.weight"].shard is ShardRule.REPLICATED
    assert w["lm_head.weight"].shard is ShardRule.VOCAB and w["model.norm.weight"].shape == (8192,)
    assert len(w) == 2 + 1 + 80 * 9
    layer = 4 * 8192 * 8192 // 4 * 2 + 2 * 1024 * 8192 + 3 * 8192 * 28672 + 2 * 8192
    assert g.layer_weight_bytes(7) == layer * 2 == sum(g.layer_weight_bytes(i) for i in range(80)) // 80
    assert g.kv_bytes_per_token_per_layer() == 2 * 8 * 128 * 2


def test_qwen2_biases_and_qwen3_norms():
    q2 = {w.name: w for w in build_graph(load_model_config("qwen2-7b")).weights()}
    for p in ("q", "k", "v"):
        assert f"model.layers.0.self_attn.{p}_proj.bias" in q2
    assert "model.layers.0.self_attn.o_proj.bias" not in q2
    assert q2["model.layers.0.self_attn.k_proj.bias"].shard is ShardRule.KV_HEAD
    assert q2["model.layers.0.self_attn.q_proj.bias"].shard is ShardRule.COLUMN
    g3 = build_graph(load_model_config("qwen3-8b"))
    w3 = {w.name: w for w in g3.weights()}
    assert w3["model.layers.3.self_attn.q_norm.weight"].shape == (128,)
    assert w3["model.layers.3.self_attn.k_norm.weight"].shard is ShardRule.REPLICATED
    assert set(g3.g.predecessors("layers.3.rope")) == {"layers.3.q_norm", "layers.3.k_norm"}
    assert g3.op("layers.3.q_norm").kind is OpKind.RMSNORM


def test_weight_bytes_per_rank_under_tp():
    g = build_graph(load_model_config("llama-3-8b"))
    total, tp4 = g.weight_bytes(), g.weight_bytes(tp=4)
    norms = (32 * 2 + 1) * 4096 * 2  # replicated on every rank
    assert tp4 == (total - norms) // 4 + norms

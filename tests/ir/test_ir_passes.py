"""TP and PP passes: collectives, stages, send/recv, partitions, lowering."""
import networkx as nx
import pytest

from seesaw.ir import (InputError, Layout, OpKind, apply_pp, apply_tp, build_graph, even_partition,
                       load_model_config, lower, stage_ops, PassShape)


@pytest.fixture(scope="module")
def smol():
    return build_graph(load_model_config("SmolLM2-135M"))


def kinds(ops, kind):
    return [op for op in ops if op.kind is kind]


def test_apply_tp_inserts_collectives(smol):
    g = apply_tp(smol, 3)
    assert len(smol.ops()) == 423  # original untouched
    for i in range(30):
        ars = kinds(g.layer_ops(i), OpKind.ALL_REDUCE)
        assert [op.name for op in ars] == [f"layers.{i}.o_proj.all_reduce", f"layers.{i}.down_proj.all_reduce"]
    assert list(g.g.successors("layers.4.o_proj")) == ["layers.4.o_proj.all_reduce"]
    assert list(g.g.successors("layers.4.o_proj.all_reduce")) == ["layers.4.attn_residual"]
    assert [op.name for op in g.pre_ops()] == ["embed_tokens", "embed_tokens.all_reduce"]
    assert set(g.g.successors("embed_tokens.all_reduce")) == {"layers.0.input_layernorm", "layers.0.attn_residual"}
    assert [op.kind for op in g.post_ops()] == [OpKind.RMSNORM, OpKind.LM_HEAD, OpKind.ALL_GATHER]
    assert len(kinds(g.ops(), OpKind.ALL_REDUCE)) == 2 * 30 + 1
    assert all(d["tp"] == 3 for _, d in g.g.nodes(data=True))
    assert list(nx.topological_sort(g.g)) == list(g.g.nodes)  # insertion order is program order
    assert g.num_parameters() == smol.num_parameters()


def test_apply_tp_one_and_errors(smol):
    assert len(apply_tp(smol, 1).ops()) == len(smol.ops())
    with pytest.raises(InputError) as info:
        apply_tp(smol, 2)
    assert info.value.field == "tp"
    with pytest.raises(InputError):
        apply_tp(apply_tp(smol, 3), 3)


def test_apply_pp_uneven(smol):
    stages = [(0, 5), (5, 17), (17, 30)]
    g = apply_pp(smol, stages)
    sends, recvs = kinds(g.ops(), OpKind.SEND), kinds(g.ops(), OpKind.RECV)
    assert [op.name for op in sends] == ["layers.4.mlp_residual.send[0->1]", "layers.16.mlp_residual.send[1->2]"]
    assert [op.dims["dst_stage"] for op in recvs] == [1, 2]
    recv = "layers.4.mlp_residual.recv[0->1]"
    assert set(g.g.successors(recv)) == {"layers.5.input_layernorm", "layers.5.attn_residual"}
    assert list(g.g.successors("layers.4.mlp_residual")) == ["layers.4.mlp_residual.send[0->1]"]
    st = nx.get_node_attributes(g.g, "stage")
    assert all(st[u] == st[v] for u, v in g.g.edges if g.g.nodes[u]["op"].kind is not OpKind.SEND)
    assert st["embed_tokens"] == 0 and st["lm_head"] == 2 and st["norm"] == 2
    assert st["layers.5.q_proj"] == 1 and st[recv] == 1
    s1 = stage_ops(g, 1)
    assert s1[0].name == recv and s1[-1].kind is OpKind.SEND
    assert {op.layer for op in s1} == set(range(5, 17))  # the send of layer 4's output lives in stage 0
    assert s1[0].layer == 5
    assert recvs[0].comm_bytes(PassShape.decode(8, 10), 2) == 8 * 576 * 2


@pytest.mark.parametrize("bad", [
    [], [(0, 10)], [(0, 10), (11, 30)], [(0, 0), (0, 30)], [(1, 30)], [(0, 20), (20, 31)],
    [(0, "x"), (10, 30)], [5, 6], "0-30",
])
def test_apply_pp_rejects(smol, bad):
    with pytest.raises(InputError) as info:
        apply_pp(smol, bad)
    assert info.value.field == "stage_layers"


def test_even_partition():
    assert even_partition(30, 1) == [(0, 30)]
    assert even_partition(30, 4) == [(0, 7), (7, 15), (15, 23), (23, 30)]
    assert even_partition(80, 8)[-1] == (70, 80)
    for n, pp in ((30, 7), (80, 3), (5, 5)):
        parts = even_partition(n, pp)
        assert parts[0][0] == 0 and parts[-1][1] == n and len(parts) == pp
        sizes = [b - a for a, b in parts]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(InputError) as info:
        even_partition(30, 31)
    assert info.value.field == "pp"


def test_lower_tp_pp():
    cfg = load_model_config("llama-2-70b")
    g = lower(cfg, Layout.parse("tp4pp2"))
    assert g.g.graph["stage_layers"] == [(0, 40), (40, 80)] and g.g.graph["tp"] == 4
    assert len(kinds(g.ops(), OpKind.SEND)) == 1 and len(kinds(g.ops(), OpKind.ALL_REDUCE)) == 161
    assert all("tp" in d and "stage" in d for _, d in g.g.nodes(data=True))
    assert stage_ops(g, 0)[1].name == "embed_tokens.all_reduce"
    assert [op.kind for op in stage_ops(g, 1)[-3:]] == [OpKind.RMSNORM, OpKind.LM_HEAD, OpKind.ALL_GATHER]
    g2 = lower(cfg, Layout(1, 1, 3), [(0, 20), (20, 60), (60, 80)])
    assert len(kinds(g2.ops(), OpKind.RECV)) == 2
    with pytest.raises(InputError) as info:
        lower(cfg, Layout(1, 1, 2), [(0, 80)])
    assert info.value.field == "stage_layers"
    with pytest.raises(InputError) as info:
        stage_ops(g, 2)
    assert info.value.field == "stage"
    with pytest.raises(InputError):
        stage_ops(build_graph(cfg), 0)

"""Lowering a SeesawPlan + IR into an ExecutionPlan: rank maps, groups, shard maps, programs."""
from __future__ import annotations

import json
import math

import pytest

from seesaw.codegen import ExecutionPlan, build_execution_plan, check_plan
from seesaw.ir import InputError, Layout, build_graph, load_model_config, lower


def _shard_tuple(s):
    return None if s is None else (s.dim, s.start, s.stop)


def test_rank_map_and_stage_layers(pp2_tp2, dp2):
    pre = pp2_tp2.prefill
    assert pre.stage_layers == [(0, 2), (2, 4)]
    assert [(r.rank, r.dp_rank, r.pp_rank, r.tp_rank, r.layers) for r in pre.ranks] == [
        (0, 0, 0, 0, (0, 2)), (1, 0, 1, 0, (2, 4))]
    dec = pp2_tp2.decode
    assert dec.stage_layers == [(0, 4)]
    assert [(r.dp_rank, r.pp_rank, r.tp_rank, r.layers) for r in dec.ranks] == [(0, 0, 0, (0, 4)), (0, 0, 1, (0, 4))]
    # dp2pp2: rank = dp_rank * 2 + pp_rank
    assert [(r.dp_rank, r.pp_rank) for r in dp2.prefill.ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_process_groups(pp2_tp2, dp2):
    assert [(g.id, g.kind, g.ranks) for g in pp2_tp2.prefill.process_groups] == [(0, "pp", [0, 1])]
    assert [(g.id, g.kind, g.ranks) for g in pp2_tp2.decode.process_groups] == [(0, "tp", [0, 1])]
    assert [(g.id, g.kind, g.ranks) for g in dp2.prefill.process_groups] == [(0, "pp", [0, 1]), (1, "pp", [2, 3])]
    assert [(g.id, g.kind, g.ranks) for g in dp2.decode.process_groups] == [(0, "tp", [0, 1]), (1, "tp", [2, 3])]


def test_collectives_name_the_ranks_own_tp_group(dp2):
    groups = {g.id: g.ranks for g in dp2.decode.process_groups}
    for r in dp2.decode.ranks:
        colls = [i for i in r.program if i.op in ("all_reduce", "all_gather")]
        assert colls and all(r.rank in groups[i.group] for i in colls)
        assert {i.group for i in colls} == {r.dp_rank}


def test_tp2_shard_slices(pp2_tp2):
    r0, r1 = (r.weight_shards for r in pp2_tp2.decode.ranks)
    q, k, o = ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
               "model.layers.0.self_attn.o_proj.weight")
    assert (_shard_tuple(r0[q]), _shard_tuple(r1[q])) == ((0, 0, 32), (0, 32, 64))  # column: 4 heads x 16
    assert (_shard_tuple(r0[k]), _shard_tuple(r1[k])) == ((0, 0, 16), (0, 16, 32))  # one KV head each
    assert (_shard_tuple(r0[o]), _shard_tuple(r1[o])) == ((1, 0, 32), (1, 32, 64))  # row-parallel
    emb = "model.embed_tokens.weight"
    assert (_shard_tuple(r0[emb]), _shard_tuple(r1[emb])) == ((0, 0, 64), (0, 64, 128))  # vocab
    assert r0["model.layers.0.input_layernorm.weight"] is None  # replicated


@pytest.mark.parametrize("tp", [2, 4])
def test_tp_slices_cover_every_tensor(cfg, build_plan, tp):
    """Each sharded tensor's distinct slices tile it exactly once (tp4 replicates each of 2 KV heads)."""
    plan = build_plan(cfg, Layout(tp=tp), Layout(tp=tp))
    weights = {w.name: w for w in build_graph(cfg).weights()}
    assert set(plan.decode.ranks[0].weight_shards) == set(weights)
    for name, w in weights.items():
        slices = [r.weight_shards[name] for r in plan.decode.ranks]
        if slices[0] is None:
            assert all(s is None for s in slices)
            continue
        distinct = sorted({(s.start, s.stop) for s in slices})
        assert [a for a, _ in distinct] == [0] + [b for _, b in distinct[:-1]]
        assert distinct[-1][1] == w.shape[slices[0].dim]
        assert len(slices) % len(distinct) == 0
    k = [r.weight_shards["model.layers.1.self_attn.k_proj.weight"] for r in plan.decode.ranks]
    if tp == 4:
        assert [(s.start, s.stop) for s in k] == [(0, 16), (0, 16), (16, 32), (16, 32)]
    check_plan(plan)


def test_pp2_stage_tensors(pp2_tp2, cfg):
    r0, r1 = (set(r.weight_shards) for r in pp2_tp2.prefill.ranks)
    assert "model.embed_tokens.weight" in r0 and "model.embed_tokens.weight" not in r1
    assert {"model.norm.weight", "lm_head.weight"} <= r1 and not {"model.norm.weight", "lm_head.weight"} & r0
    assert all(".layers.0." in n or ".layers.1." in n for n in r0 - {"model.embed_tokens.weight"})
    assert not r0 & r1
    assert r0 | r1 == {w.name for w in build_graph(cfg).weights()}
    assert all(v is None for r in pp2_tp2.prefill.ranks for v in r.weight_shards.values())  # tp1: whole tensors


def test_tied_lm_head_maps_embedding_on_last_stage(make_config, build_plan):
    cfg = make_config(tie_word_embeddings=True)
    plan = build_plan(cfg, Layout(pp=2), Layout(tp=2))
    r0, r1 = plan.prefill.ranks
    emb = "model.embed_tokens.weight"
    assert emb in r0.weight_shards and emb in r1.weight_shards and "lm_head.weight" not in r1.weight_shards
    head = [i for i in r1.program if i.op == "lm_head"]
    assert len(head) == 1 and head[0].weights == [emb]
    check_plan(plan)


def test_tp2_program_structure(pp2_tp2, cfg):
    for r in pp2_tp2.decode.ranks:
        ops = [i.op for i in r.program]
        assert ops[0] == "embedding" and ops[1] == "all_reduce" and ops[-1] == "sample"
        assert ops[-4:] == ["rmsnorm", "lm_head", "all_gather", "sample"]
        assert "send" not in ops and "recv" not in ops
        for layer in range(cfg.num_hidden_layers):
            body = [i.op for i in r.program if i.layer == layer]
            assert body.count("all_reduce") == 2
            assert body.index("attention") < body.index("all_reduce") < body.index("silu_mul")
        assert ops.count("all_reduce") == 2 * cfg.num_hidden_layers + 1  # + the vocab-parallel embedding


def test_pp2_send_recv_pairs(pp2_tp2, dp2):
    r0, r1 = pp2_tp2.prefill.ranks
    assert [(i.op, i.peer) for i in r0.program if i.op in ("send", "recv")] == [("send", 1)]
    assert [(i.op, i.peer) for i in r1.program if i.op in ("send", "recv")] == [("recv", 0)]
    assert r0.program[-1].op == "send" and r1.program[0].op == "recv"
    assert "sample" not in [i.op for i in r0.program] and r1.program[-1].op == "sample"
    assert not any(i.op in ("all_reduce", "all_gather") for r in (r0, r1) for i in r.program)
    # dp2pp2: each replica's pipeline talks only inside itself
    peers = {r.rank: [i.peer for i in r.program if i.op in ("send", "recv")] for r in dp2.prefill.ranks}
    assert peers == {0: [1], 1: [0], 2: [3], 3: [2]}


def test_program_is_topological_and_matches_ir(pp2_tp2, cfg):
    graph = lower(cfg, Layout(pp=2), [(0, 2), (2, 4)])
    for r in pp2_tp2.prefill.ranks:
        names = [i.name for i in r.program if i.op != "sample"]
        stage = [n for n, d in graph.g.nodes(data=True) if d["stage"] == r.pp_rank]
        assert sorted(names) == sorted(stage)
        pos = {n: k for k, n in enumerate(names)}
        for u, v in graph.g.edges:
            if u in pos and v in pos:
                assert pos[u] < pos[v]
        for ins in r.program:
            assert set(ins.weights) <= set(r.weight_shards)


def test_plan_sections(pp2_tp2, cfg):
    p = pp2_tp2
    assert p.schema_version == "1.3" and p.generator.startswith("seesaw ")
    assert p.model.fingerprint == cfg.fingerprint()
    assert p.model.num_parameters == build_graph(cfg).num_parameters()
    assert p.model.weight_bytes == 2 * p.model.num_parameters
    assert p.kv.gpu_pages_per_rank == math.ceil(1000 / 16)
    assert p.kv.kv_bytes_per_token == 4 * 2 * 2 * 16 * 2  # layers * (K,V) * kv_heads * head_dim * bf16
    assert p.kv.host_buffer_layout == "[layers, 2, kv_heads, tokens, head_dim]"
    assert p.schedule.static is False and p.schedule.max_batched_tokens is None
    assert p.prediction.total_s == pytest.approx(3.15)
    s = p.summary
    assert (s.prefill.pp, s.decode.tp, s.gpu_kv_tokens, s.host_kv_buffer_tokens) == (2, 2, 1000, 5000)
    assert s.best_static.predicted_tokens_per_s == 800.0 and s.speedup_vs_best_static == pytest.approx(1.25)
    assert s.solver.name == "cp-sat" and s.breakdown.transitions == 3
    assert s.memory_per_gpu_gb == pytest.approx(p.prediction.memory.device_total_bytes / 1e9)
    assert set(s.model_dump()) == {
        "prefill", "decode", "host_kv_buffer_tokens", "gpu_kv_tokens", "max_prefill_tokens",
        "decode_max_seqs", "predicted_tokens_per_s", "predicted_output_tokens_per_s", "prediction_method",
        "closed_form_tokens_per_s", "simulation_gap", "best_static", "speedup_vs_best_static", "solver", "static",
        "breakdown", "memory_per_gpu_gb"}


def test_static_plan(cfg, build_plan):
    p = build_plan(cfg, Layout(tp=2), Layout(tp=2))
    assert p.schedule.static and p.summary.static and p.schedule.max_batched_tokens == 512
    q = build_plan(cfg, Layout(tp=2), Layout(tp=2), best_static=False)
    assert q.summary.best_static is None and q.summary.speedup_vs_best_static is None
    check_plan(q)


def test_json_round_trip(pp2_tp2, dp2):
    for plan in (pp2_tp2, dp2):
        text = plan.to_json()
        back = ExecutionPlan.model_validate_json(text)
        assert back == plan and back.to_json() == text
        assert "null" not in json.dumps(json.loads(text)["decode"]["ranks"][0]["program"])  # unset fields left out


def test_bad_decisions_raise_input_error(cfg, make_decision):
    with pytest.raises(InputError) as err:
        build_execution_plan(cfg, make_decision(cfg, Layout(pp=2), Layout(dp=2)), {"num_gpus": 2}, {})
    assert err.value.field == "decode.dp"
    with pytest.raises(InputError) as err:
        build_execution_plan(cfg, make_decision(cfg, Layout(pp=2), Layout(tp=2)), {"num_gpus": 4}, {})
    assert err.value.field == "prefill.layout"
    with pytest.raises(InputError) as err:  # 3 does not divide 4 heads
        build_execution_plan(cfg, make_decision(cfg, Layout(pp=3), Layout(tp=3)), {"num_gpus": 3}, {})
    assert err.value.field == "decode.tp"
    with pytest.raises(InputError) as err:  # uneven stage list that skips layer 2
        build_execution_plan(cfg, make_decision(cfg, Layout(pp=2), Layout(tp=2), prefill_stages=[(0, 2), (3, 4)]),
                             {"num_gpus": 2}, {})
    assert err.value.field == "prefill.stage_layers"


def test_70b_plan_stays_small():
    big = load_model_config("llama-2-70b")
    from seesaw.codegen.lower import build_phase_plan
    from seesaw.planner.decision import PhaseLayout

    pre = build_phase_plan(big, PhaseLayout(Layout(pp=8), tuple((i * 10, i * 10 + 10) for i in range(8))), "prefill")
    dec = build_phase_plan(big, PhaseLayout(Layout(tp=8), ((0, 80),)), "decode")
    size = len(pre.model_dump_json()) + len(dec.model_dump_json())
    assert size < 10e6
    assert sum(i.op == "all_reduce" for i in dec.ranks[3].program) == 2 * 80 + 1


def test_real_cluster_and_workload(cfg, make_decision, tmp_path):
    """The planner's Cluster and Workload objects are stored as their dumps and validate."""
    from seesaw.codegen import validate_plan_file, write_plan
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.workload import Workload

    cluster = load_cluster("2xA10")
    workload = Workload("mini", (100, 200, 300), (10, 20, 30))
    plan = build_execution_plan(cfg, make_decision(cfg, Layout(pp=2), Layout(tp=2)), cluster, workload)
    assert plan.cluster == cluster.model_dump(mode="json") and plan.cluster["num_gpus"] == 2
    assert plan.workload == workload.summary()
    write_plan(plan, tmp_path / "p.json")
    assert validate_plan_file(tmp_path / "p.json") == plan


def test_first_replica_form_expands_to_the_full_plan(cfg, build_plan, make_decision):
    """A plan listing DP replica 0's ranks only expands, rank by rank, to exactly the plan that lists all."""
    full = build_plan(cfg, Layout(dp=4, pp=2), Layout(dp=4, tp=2))
    short = build_execution_plan(cfg, make_decision(cfg, Layout(dp=4, pp=2), Layout(dp=4, tp=2)),
                                 {"name": "test", "num_gpus": 8}, {"name": "test"}, list_all_ranks=False)
    for name in ("prefill", "decode"):
        f, s = full.phase(name), short.phase(name)
        assert (f.ranks_listed, s.ranks_listed, len(f.ranks), len(s.ranks)) == ("all", "first-replica", 8, 2)
        assert s.process_groups == f.process_groups
        assert [s.rank_plan(r) for r in range(8)] == [f.rank_plan(r) for r in range(8)] == f.ranks
        with pytest.raises(IndexError):
            s.rank_plan(8)
    check_plan(short, cfg)


def test_large_cluster_lists_the_first_replica_only(cfg, build_plan):
    from seesaw.codegen.lower import LIST_ALL_RANKS_UP_TO

    dp = LIST_ALL_RANKS_UP_TO  # dp * tp2 ranks: more than listed in full
    plan = build_plan(cfg, Layout(dp=dp, tp=2), Layout(dp=dp, pp=2))
    assert plan.prefill.ranks_listed == plan.decode.ranks_listed == "first-replica"
    assert len(plan.prefill.ranks) == len(plan.decode.ranks) == 2
    assert len(plan.decode.process_groups) == dp
    last = plan.decode.rank_plan(2 * dp - 1)
    assert (last.dp_rank, last.pp_rank) == (dp - 1, 1)
    assert [i.peer for i in last.program if i.op == "recv"] == [2 * dp - 2]
    check_plan(plan, cfg)


def test_expert_parallel_ranks_hold_and_run_their_groups_experts_only(make_config, build_plan):
    """tp4ep2 of a tiny 4-expert Mixtral: ranks 0-1 hold experts 0-1, ranks 2-3 experts 2-3, each expert split
    over its group's two ranks; the moe_experts instruction lists the held experts only; the plan checks, and
    a rank that claims another group's expert is refused."""
    cfg = make_config(architectures=["MixtralForCausalLM"], num_local_experts=4, num_experts_per_tok=2)
    plan = build_plan(cfg, Layout(tp=4, ep=2), Layout(tp=4, ep=2))
    assert plan.decode.layout.ep == 2 and str(plan.decode.layout) == "tp4ep2"
    w1 = "model.layers.0.block_sparse_moe.experts.{}.w1.weight"
    for rank in plan.decode.ranks:
        held = sorted({int(n.split(".experts.")[1].split(".")[0]) for n in rank.weight_shards if ".experts." in n})
        assert held == ([0, 1] if rank.tp_rank < 2 else [2, 3])
        moe = next(i for i in rank.program if i.op == "moe_experts" and i.layer == 0)
        assert {n.split(".experts.")[1].split(".")[0] for n in moe.weights} == {str(e) for e in held}
    slices = [_shard_tuple(r.weight_shards[w1.format(2)]) for r in plan.decode.ranks[2:]]
    assert slices == [(0, 0, 64), (0, 64, 128)]  # expert 2's 128 rows over ranks 2 and 3
    check_plan(plan)
    data = plan.model_dump(mode="json")
    data["decode"]["ranks"][0]["weight_shards"][w1.format(3)] = {"dim": 0, "start": 0, "stop": 64}
    with pytest.raises(InputError, match="another expert group"):
        check_plan(ExecutionPlan.model_validate(data))

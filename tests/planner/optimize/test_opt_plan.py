"""Planner entry point: invariants of the chosen plan, pins, --static, determinism, errors."""
from __future__ import annotations

import pytest
from helpers.instances import tiny_cluster, tiny_model, tiny_workload

from seesaw.ir import load_model_config
from seesaw.ir.errors import InputError
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize.solve import plan
from seesaw.planner.optimize.space import SearchOptions
from seesaw.planner.optimize.terms import host_buffer_max_tokens
from seesaw.planner.workload import load_workload


@pytest.fixture(scope="module")
def sharegpt():
    return load_workload("sharegpt")


@pytest.fixture(scope="module")
def sharegpt_2k():
    """The first 2,000 ShareGPT requests: simulation of the candidates takes a fraction of the full trace's."""
    return load_workload("sharegpt:2000")


@pytest.fixture(scope="module")
def llama70b():
    return load_model_config("llama-2-70b")


def _check_invariants(p, cost):
    pred = p.prediction
    mem = pred.memory
    assert mem.device_total_bytes <= mem.capacity_bytes
    assert mem.host_weights_bytes + mem.host_kv_buffer_bytes <= mem.host_capacity_bytes
    for phase in (p.prefill, p.decode):
        stops = [b for _, b in phase.stage_layers]
        starts = [a for a, _ in phase.stage_layers]
        assert starts[0] == 0 and stops[-1] == cost.cfg.num_hidden_layers
        assert starts[1:] == stops[:-1]
        assert len(phase.stage_layers) == phase.layout.pp
    assert p.prefill.layout.dp == p.decode.layout.dp
    assert p.prefill.layout.world_size == cost.cluster.num_gpus
    total = cost.workload.prompt_tokens + cost.workload.output_tokens
    assert pred.tokens_per_s == pytest.approx(total / pred.breakdown.total_s)
    if not p.is_static:
        assert p.prefill_to_decode_threshold_tokens + p.max_prefill_tokens <= p.host_kv_buffer_tokens
        assert p.host_kv_buffer_tokens <= host_buffer_max_tokens(cost, p.prefill.layout.dp, True)
        assert pred.breakdown.transitions % 2 == 1  # 2C - 1
        assert p.gpu_kv_tokens >= p.decode_max_seqs  # room for at least one token per running sequence


def test_70b_on_pcie_reshards_and_beats_static(llama70b, sharegpt):
    cl = load_cluster("8xA10")
    p = plan(llama70b, cl, sharegpt)
    _check_invariants(p, CostModel(llama70b, cl, sharegpt))
    assert p.solver.status == "OPTIMAL"
    assert p.prefill.layout != p.decode.layout
    assert p.prefill.layout.pp > p.decode.layout.pp  # PP for prefill, more TP for decode (DESIGN 1)
    assert p.prediction.tokens_per_s > p.best_static.prediction.tokens_per_s


def test_plan_is_deterministic(llama70b, sharegpt_2k):
    cl = load_cluster("8xL4")
    a, b = plan(llama70b, cl, sharegpt_2k), plan(llama70b, cl, sharegpt_2k)
    assert (a.prefill, a.decode, a.host_kv_buffer_tokens, a.gpu_kv_tokens, a.max_prefill_tokens,
            a.decode_max_seqs) == (b.prefill, b.decode, b.host_kv_buffer_tokens, b.gpu_kv_tokens,
                                   b.max_prefill_tokens, b.decode_max_seqs)
    assert a.solver.objective == b.solver.objective


def test_pins_and_static(llama70b, sharegpt_2k):
    cl = load_cluster("8xA10")
    wl = sharegpt_2k
    p = plan(llama70b, cl, wl, SearchOptions(prefill=Layout.parse("pp8"), decode=Layout.parse("tp8")))
    assert p.prefill.layout == Layout(1, 1, 8) and p.decode.layout == Layout(1, 8, 1)
    s = plan(llama70b, cl, wl, SearchOptions(static=True))
    assert s.is_static and s.prefill.layout == s.best_static.phase.layout
    assert s.prediction.breakdown.transitions == 0
    # the free plan is at least as good as the static one: it picks among the same static candidates and more
    free = plan(llama70b, cl, wl)
    assert free.prediction.tokens_per_s >= s.prediction.tokens_per_s
    assert free.best_static.phase == s.best_static.phase


def test_simulation_replaces_the_closed_form_prediction(llama70b, sharegpt_2k):
    """By default the plan's prediction is simulated, with the closed form beside it; without simulation the
    closed form is the prediction."""
    cl = load_cluster("8xA10")
    sim = plan(llama70b, cl, sharegpt_2k)
    closed = plan(llama70b, cl, sharegpt_2k, simulate=False)
    assert sim.prediction.method == "simulated" and closed.prediction.method == "closed-form"
    assert sim.prediction.closed_form_s > 0 and sim.prediction.gap_vs_closed_form is not None
    assert sim.best_static.prediction.method == "simulated" and sim.best_static.gpu_memory_utilization == 0.9
    assert closed.prediction.closed_form_s is None and closed.best_static.gpu_memory_utilization is None


def test_impossible_pins_are_input_errors(llama70b, sharegpt):
    cl = load_cluster("8xA10")
    with pytest.raises(InputError, match="uses 16 GPUs"):
        plan(llama70b, cl, sharegpt, SearchOptions(prefill=Layout.parse("tp16")))
    with pytest.raises(InputError, match="dp must be equal"):
        plan(llama70b, cl, sharegpt, SearchOptions(prefill=Layout.parse("dp2pp4"), decode=Layout.parse("tp8")))
    with pytest.raises(InputError, match="tp=3"):
        plan(load_model_config("llama-2-7b"), load_cluster("6xA10"), sharegpt,
             SearchOptions(prefill=Layout.parse("tp3pp2")))


@pytest.mark.parametrize("pins, static", [(("dp8", "dp8"), False), (("dp8", None), False), ((None, "dp8"), False),
                                          (("dp8", None), True)])
def test_a_pin_that_does_not_fit_is_refused_never_replaced(llama70b, sharegpt, pins, static):
    """A pinned layout is a constraint: with no plan that keeps it, the planner says by how much memory the
    pinned phase misses, instead of returning the best static layout."""
    prefill, decode = (Layout.parse(x) if x else None for x in pins)
    with pytest.raises(InputError, match=r"pinned layouts: --(prefill|decode) dp8: llama-2-70b needs \d+\.\d GB "
                                         r"per GPU, short by \d+\.\d GB") as err:
        plan(llama70b, load_cluster("8xA10"), load_workload("sharegpt:200"), SearchOptions(prefill, decode, static))
    assert err.value.field == "--prefill/--decode"


def test_model_that_cannot_fit_names_the_shortfall(llama70b, sharegpt):
    with pytest.raises(InputError, match=r"short by \d+\.\d GB"):
        plan(llama70b, load_cluster("2xA10"), sharegpt)


def test_small_instance_invariants():
    cost_args = (tiny_model(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8,
                            num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
                 tiny_cluster(0.4, 4.0, link_gb_per_s=1.0), tiny_workload(64, max_prompt=200, max_output=400))
    p = plan(*cost_args)
    _check_invariants(p, CostModel(*cost_args))
    ex = plan(*cost_args, search="exhaustive")
    assert ex.solver.objective == p.solver.objective
    assert ex.solver.name == "exhaustive"

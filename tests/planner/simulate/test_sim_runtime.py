"""The simulated runtime makes the runtime's decisions, and agrees with the closed form where both are exact."""
from __future__ import annotations

import random

import pytest
from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from helpers.plans import make_plan

from seesaw.ir import ModelConfig, load_model_config
from seesaw.planner.cost.model import CostModel
from seesaw.ir.layout import Layout
from seesaw.planner.hardware import get_gpu, load_cluster
from seesaw.planner.hardware.cluster import build_cluster
from seesaw.planner.optimize.objective import evaluate_seesaw
from seesaw.planner.optimize.terms import decode_terms, prefill_terms
from seesaw.planner.simulate import RuntimePlan, simulate_runtime
from seesaw.planner.simulate.runtime_sim import simulate_replica
from seesaw.planner.workload import Workload

def even_counts(layers: int, pp: int) -> tuple[int, ...]:
    q, r = divmod(layers, pp)
    return tuple([q + 1] * r + [q] * (pp - r))


# (prefill, decode, plan overrides): re-sharding with a small host buffer (several cycles, swap-ins bounded
# by the device cache) and a one-layout plan that prefills straight into the device cache, both with PP.
PLANS = [("pp2", "tp2", dict(host_buffer_tokens=40, gpu_kv_tokens=96, max_prefill_tokens=24, decode_max_seqs=3)),
         ("pp2", "pp2", dict(host_buffer_tokens=0, gpu_kv_tokens=80, max_prefill_tokens=30, decode_max_seqs=4))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("llama"), LLAMA_GQA, seed=3)


def _runtime_counts(steps: list[dict]) -> dict:
    return {"prefill_batches": sum(r["kind"] == "prefill" for r in steps),
            "decode_steps": sum(r["kind"] == "decode" for r in steps),
            "transitions": sum(r["kind"] == "transition" for r in steps),
            "swap_in_tokens": sum(r.get("swap_in_tokens", 0) for r in steps)}


@pytest.mark.parametrize("prefill, decode, kw", PLANS, ids=[f"{p}->{d}" for p, d, _ in PLANS])
def test_simulation_reproduces_the_runtime_counts(checkpoint, prefill, decode, kw):
    """Same plan, same requests on CPU: prefill batches, decode steps, transitions and swapped-in tokens of
    the real run equal the simulation's (the shared scheduler decides both; only the clock differs)."""
    from seesaw.runtime.engine import Engine
    from seesaw.schedule.replica import Sequence

    rng = random.Random(5)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(2, 20))] for _ in range(11)]
    outputs = [rng.randint(1, 9) for _ in prompts]
    plan = make_plan(checkpoint, prefill, decode, **kw)
    with Engine(plan, str(checkpoint)) as eng:
        seqs = [Sequence(i, p, o, ignore_eos=True) for i, (p, o) in enumerate(zip(prompts, outputs))]
        seqs, metrics = eng.generate(seqs, eos_ids=set())
    assert all(s.finish_reason == "length" for s in seqs)
    cfg = ModelConfig.from_hf_dict(LLAMA_GQA, name="test-model")
    cost = CostModel(cfg, load_cluster("2xcpu"), Workload("w", [len(p) for p in prompts], outputs))
    sim = simulate_runtime(cost, RuntimePlan.from_plan_file(plan.model_dump()))
    got = {k: getattr(sim, k) for k in ("prefill_batches", "decode_steps", "transitions", "swap_in_tokens")}
    assert got == _runtime_counts(metrics.steps)
    assert sim.output_tokens == metrics.output_tokens == sum(outputs)
    assert metrics.transitions == sim.transitions


@pytest.mark.parametrize("gpu, prefill, decode", [("A10", "pp4", "tp2pp2"), ("H100-SXM", "tp2pp2", "tp4"),
                                                  ("A10", "tp4", "tp4")])
def test_one_wave_of_equal_requests_matches_the_closed_form(gpu, prefill, decode):
    """Every request fits one prefill phase and one decode batch, all of one length: the closed form's mean
    batch and mean context are then exact, and the simulated run takes the closed form's time. The host
    link is made so fast that KV copies and reloads vanish: the closed form hides KV copies behind compute,
    while the workers (and so the simulation) make them inline."""
    cfg = load_model_config("llama-2-13b")
    wl = Workload("one-wave", (512,) * 48, (128,) * 48)
    cl = build_cluster(get_gpu(gpu), 4, "test", "test", host_link_gb_per_s=1e9)
    cost = CostModel(cfg, cl, wl)
    pre_l, dec_l = Layout.parse(prefill), Layout.parse(decode)
    pc, dc = even_counts(cfg.num_hidden_layers, pre_l.pp), even_counts(cfg.num_hidden_layers, dec_l.pp)
    pre, dec = prefill_terms(cost, pre_l, 4096), decode_terms(cost, dec_l, 48)
    ev = evaluate_seesaw(cost, pre, dec, pc, dc)
    rp = RuntimePlan(pre_l, pc, dec_l, dc, gpu_kv_tokens=48 * 640, host_buffer_tokens=48 * 512, page_size_tokens=16,
                     max_prefill_tokens=4096, decode_max_seqs=48, prefill_to_decode_threshold_tokens=48 * 512,
                     decode_to_prefill_threshold_tokens=0)
    run = simulate_runtime(cost, rp)
    assert (run.prefill_batches, run.decode_steps) == (6, 127 * dec_l.pp)
    assert run.transitions == (1 if prefill != decode else 0)
    assert run.prefill_s == pytest.approx(ev.prefill_ns / 1e9, rel=0.01)
    assert run.decode_s == pytest.approx(ev.decode_ns / 1e9, rel=0.01)
    assert run.wall_s == pytest.approx(ev.objective_ns / 1e9, rel=0.01)


def test_refused_requests_are_counted_and_excluded():
    cfg = load_model_config("llama-3-8b")
    cost = CostModel(cfg, load_cluster("1xA10"), Workload("w", (100, 5000), (10, 10)))
    lay = Layout(1, 1, 1)
    rp = RuntimePlan(lay, (32,), lay, (32,), gpu_kv_tokens=1024, host_buffer_tokens=0, page_size_tokens=16,
                     max_prefill_tokens=2048, decode_max_seqs=8, prefill_to_decode_threshold_tokens=0,
                     decode_to_prefill_threshold_tokens=0)
    run = simulate_replica(cost, rp, [100, 5000], [10, 10])
    assert run.refused == 1 and run.output_tokens == 10 and run.prompt_tokens == 100

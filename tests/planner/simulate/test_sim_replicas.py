"""Many DP replicas: only those likely to be slowest are stepped through; the others are counted."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.hardware.engines import get_engine
from seesaw.planner.simulate import RuntimePlan, simulate_runtime
from seesaw.planner.simulate.engine_sim import EngineKnobs, EnginePlan, simulate_engine
from seesaw.planner.simulate.replicas import ALL_REPLICAS_UP_TO, PER_KEY, replica_shares, replicas_to_simulate
from seesaw.planner.workload import load_workload


def test_few_replicas_are_all_simulated_in_order():
    shares = replica_shares([5] * 40, [3] * 40, ALL_REPLICAS_UP_TO)
    assert len(shares) == ALL_REPLICAS_UP_TO and replicas_to_simulate(shares) == list(range(ALL_REPLICAS_UP_TO))
    assert replica_shares([5, 6], [1, 2], 8) == [([5], [1]), ([6], [2])]  # replicas without a request left out


def test_many_replicas_pick_the_heaviest_by_each_measure():
    dp = 64
    prompts, outputs = [10] * (4 * dp), [10] * (4 * dp)
    prompts[5] = 5000  # replica 5: the most prompt tokens
    outputs[dp + 9] = 4000  # replica 9: the longest output
    for i in (20, 21, 22, 23, 24):  # replicas 20..24: more output tokens in all, no single long one
        outputs[i] = outputs[dp + i] = 900
    shares = replica_shares(prompts, outputs, dp)
    picked = replicas_to_simulate(shares)
    assert {5, 9, 20, 21} <= set(picked) and len(picked) <= 5 * PER_KEY
    assert picked[0] == 5  # most summed tokens first: a run bounded in time stops soonest
    assert replicas_to_simulate(shares, sample=False) == list(range(dp))


@pytest.fixture(scope="module")
def cost() -> CostModel:
    return CostModel(load_model_config("llama-2-7b"), load_cluster("128xA10"), load_workload("sharegpt:3000"))


def test_sampled_runtime_simulation_matches_stepping_through_every_replica(cost):
    """dp64 x tp2 on 128 GPUs: the sampled run has the whole trace's tokens and the slowest replica's time."""
    lay = Layout(dp=64, tp=2)
    plan = RuntimePlan(lay, (32,), lay, (32,), gpu_kv_tokens=20_000, host_buffer_tokens=0, page_size_tokens=16,
                       max_prefill_tokens=4096, decode_max_seqs=64, prefill_to_decode_threshold_tokens=0,
                       decode_to_prefill_threshold_tokens=0)
    full, sampled = simulate_runtime(cost, plan, sample=False), simulate_runtime(cost, plan)
    assert (full.replicas, full.replicas_simulated, sampled.replicas) == (64, 64, 64)
    assert sampled.replicas_simulated < 64
    assert (sampled.requests, sampled.refused, sampled.prompt_tokens, sampled.output_tokens) == (
        full.requests, full.refused, full.prompt_tokens, full.output_tokens)
    assert sampled.wall_s == pytest.approx(full.wall_s, rel=0.02) and sampled.wall_s <= full.wall_s


def test_sampled_engine_simulation_matches_stepping_through_every_replica(cost):
    lay = Layout(dp=64, tp=2)
    plan = EnginePlan(lay, (32,), EngineKnobs(max_num_seqs=128, max_num_batched_tokens=2048), kv_blocks=1500)
    engine = get_engine("vllm")
    full, sampled = simulate_engine(cost, plan, engine, sample=False), simulate_engine(cost, plan, engine)
    assert sampled.replicas_simulated < full.replicas_simulated == 64
    assert (sampled.requests, sampled.refused, sampled.prompt_tokens, sampled.output_tokens) == (
        full.requests, full.refused, full.prompt_tokens, full.output_tokens)
    assert sampled.wall_s == pytest.approx(full.wall_s, rel=0.02) and sampled.wall_s <= full.wall_s

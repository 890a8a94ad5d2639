"""The vLLM-style engine simulation: chunked prefill under a token budget, paged KV with preemption, PP."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.hardware.engines import get_engine
from seesaw.planner.simulate.engine_sim import (EngineKnobs, EnginePlan, engine_kv_blocks, simulate_engine,
                                                simulate_engine_replica)

NO_HOST = get_engine("vllm").model_copy(update={"step_overhead_us": 0.0, "seq_overhead_us": 0.0})
from seesaw.planner.workload import Workload


def _cost(cluster: str = "1xH100-SXM", prompts=(8,), outputs=(8,)) -> CostModel:
    return CostModel(load_model_config("llama-3-8b"), load_cluster(cluster), Workload("w", prompts, outputs))


def _run(knobs: EngineKnobs, blocks: int, prompts, outputs, layout="tp1", counts=(32,), engine=NO_HOST):
    cost = _cost(prompts=prompts, outputs=outputs)
    return simulate_engine_replica(cost, EnginePlan(Layout.parse(layout), counts, knobs, blocks), engine,
                                   list(prompts), list(outputs))


def test_one_wave_prefills_in_budgeted_chunks_then_decodes_together():
    """10 prompts of 100 tokens under a 512-token budget: prefill takes ceil(1000 / 512) = 2 steps (the second
    also decodes the first five), then every request decodes together until its 20th token."""
    run = _run(EngineKnobs(max_num_seqs=16, max_num_batched_tokens=512), 10_000, [100] * 10, [20] * 10)
    assert run.prefill_batches == 2 and run.preemptions == 0
    # step 2 is also the first decode step of the first five; afterwards 19 steps finish the other five
    assert run.decode_steps == 1 + 19
    assert run.output_tokens == 200 and run.prompt_tokens == 1000


def test_max_num_seqs_caps_the_running_requests():
    run = _run(EngineKnobs(max_num_seqs=2, max_num_batched_tokens=8192), 10_000, [50] * 6, [5] * 6)
    # three waves of two: one prefill step and four decode steps each
    assert run.prefill_batches == 3 and run.decode_steps == 3 * 4


def test_short_kv_preempts_by_recompute_and_still_serves_everything():
    ample = _run(EngineKnobs(max_num_seqs=64), 10_000, [200] * 40, [300] * 40)
    short = _run(EngineKnobs(max_num_seqs=64), 300, [200] * 40, [300] * 40)  # 4,800 KV tokens for 40 x 500
    assert ample.preemptions == 0 and short.preemptions > 0
    assert short.output_tokens == ample.output_tokens == 40 * 300
    assert short.wall_s > ample.wall_s


def test_a_request_that_can_never_fit_is_refused():
    run = _run(EngineKnobs(), 10, [100, 500], [20, 20])  # 10 blocks = 160 tokens
    assert run.refused == 1 and run.output_tokens == 20


def test_pipeline_parallel_cohorts_take_turns():
    """pp=2: two batches in flight, each with the requests whose previous step has returned. A budget that
    admits half the prompts per batch splits them into two cohorts that decode in turns (9 steps each after
    the prefill step); one that admits all of them leaves the second batch slot idle (as vLLM's batch queue
    does), so the run takes longer."""
    split = _run(EngineKnobs(max_num_seqs=64, max_num_batched_tokens=2048), 10_000, [100] * 40, [10] * 40,
                 layout="pp2", counts=(16, 16))
    one = _run(EngineKnobs(max_num_seqs=64, max_num_batched_tokens=4096), 10_000, [100] * 40, [10] * 40,
               layout="pp2", counts=(16, 16))
    assert split.output_tokens == one.output_tokens == 400 and split.preemptions == one.preemptions == 0
    assert one.decode_steps == 9 and split.decode_steps >= 2 * 9 - 1
    assert split.wall_s < one.wall_s


def test_host_overhead_per_step_adds_time():
    base = _run(EngineKnobs(), 10_000, [100] * 8, [50] * 8)
    slow = _run(EngineKnobs(), 10_000, [100] * 8, [50] * 8, engine=NO_HOST.model_copy(update={"step_overhead_us": 1000.0}))
    steps = base.decode_steps + base.prefill_batches - 1  # the first step both prefills and is counted once
    assert slow.wall_s - base.wall_s == pytest.approx(steps * 1e-3, rel=0.05)


def test_kv_blocks_follow_the_memory_fraction():
    """Blocks = (fraction x memory - reserve - weights - activations - logits) / block bytes."""
    cost = _cost()
    lay = Layout.parse("tp1")
    knobs = EngineKnobs(max_num_seqs=256, max_num_batched_tokens=8192, gpu_memory_utilization=0.9)
    mem = cost.memory_terms(1)
    gpu = cost.cluster.gpu
    free = (0.9 * gpu.memory_bytes - gpu.runtime_reserve_bytes - cost.stage_weight_bytes(lay, (32,))[0]
            - 8192 * mem.act_bytes_per_token - 256 * mem.logits_bytes_per_seq)
    assert engine_kv_blocks(cost, lay, (32,), knobs) == int(free // (16 * 32 * mem.kv_bytes_per_token_layer))
    lower = engine_kv_blocks(cost, lay, (32,), EngineKnobs(gpu_memory_utilization=0.8))
    assert lower < engine_kv_blocks(cost, lay, (32,), knobs)


def test_data_parallel_replicas_split_the_requests():
    prompts, outputs = [100] * 20, [10] * 20
    cost = _cost("2xH100-SXM", prompts, outputs)
    knobs = EngineKnobs()
    plan = EnginePlan(Layout.parse("dp2"), (32,), knobs, 10_000)
    run = simulate_engine(cost, plan, NO_HOST)
    assert run.output_tokens == 200 and len(run.per_replica) == 2


def test_reserve_admission_never_preempts_and_holds_whole_budgets():
    """TensorRT-LLM's GUARANTEED_NO_EVICT: a request starts only when blocks for its prompt and all its
    output are free, so a cache that vLLM's policy overfills (and preempts in) admits fewer at once."""
    reserve = NO_HOST.model_copy(update={"kv_admission": "reserve"})
    short = _run(EngineKnobs(max_num_seqs=64), 300, [200] * 40, [300] * 40, engine=reserve)
    preempting = _run(EngineKnobs(max_num_seqs=64), 300, [200] * 40, [300] * 40)
    assert short.preemptions == 0 and preempting.preemptions > 0
    assert short.output_tokens == 40 * 300
    # 300 blocks of 16 tokens hold 9 budgets of 500 tokens (32 blocks each) at once: waves of 9
    assert short.prefill_batches == -(-40 // 9)


def test_without_chunked_prefill_steps_prefill_whole_prompts_or_decode():
    """vLLM V0's default: a step either prefills whole prompts (as many as the budget holds) or decodes."""
    knobs = EngineKnobs(max_num_seqs=16, max_num_batched_tokens=512, enable_chunked_prefill=False)
    run = _run(knobs, 10_000, [100] * 10, [20] * 10)
    # 5 prompts of 100 fit 512 tokens: two prefill steps, then 19 decode steps for everyone
    assert run.prefill_batches == 2 and run.decode_steps == 19


def test_kv_fraction_of_free_memory_leaves_more_for_a_tight_model():
    """TensorRT-LLM's fraction applies to the memory left after the weights: with 70B on two H100s the 0.9
    of the whole device would leave almost nothing, 0.9 of what is free leaves room."""
    cost = CostModel(load_model_config("llama-3-70b"), load_cluster("2xH100-SXM"), Workload("w", (8,), (8,)))
    lay, knobs = Layout.parse("tp2"), EngineKnobs()
    assert engine_kv_blocks(cost, lay, (80,), knobs, "free") > 2 * engine_kv_blocks(cost, lay, (80,), knobs, "total")


def test_prompt_chunks_that_find_no_block_preempt_a_prefilling_request():
    """Two PP cohorts each holding a partly prefilled long prompt can fill the cache with no decoding request
    to preempt: a chunk then preempts the latest prefilling request, and every request still completes."""
    run = _run(EngineKnobs(max_num_seqs=8, max_num_batched_tokens=512), 100, [1500] * 3, [10] * 3,
               layout="pp2", counts=(16, 16))
    assert run.output_tokens == 30 and run.preemptions > 0

"""Fixtures for codegen tests: a tiny Llama-style config and hand-made planner decisions."""
from __future__ import annotations

import json

import pytest

from seesaw.codegen import ExecutionPlan, build_execution_plan
from seesaw.ir import Layout, ModelConfig, even_partition
from seesaw.planner.decision import (
    MemoryUse, PhaseBreakdown, PhaseLayout, Prediction, SeesawPlan, SolverInfo, StaticPlan,
)

TINY_HF = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
    "max_position_embeddings": 256, "torch_dtype": "bfloat16",
}

MEMORY = MemoryUse(weights_bytes=400_000, kv_cache_bytes=512_000, workspace_bytes=100_000,
                   reserve_bytes=1_000_000, capacity_bytes=24_000_000_000, host_weights_bytes=700_000,
                   host_kv_buffer_bytes=2_560_000, host_capacity_bytes=80_000_000_000)


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig.from_hf_dict({**TINY_HF, **overrides}, name="tiny")


def phase(layout: Layout, cfg: ModelConfig, stages=None) -> PhaseLayout:
    stages = stages if stages is not None else even_partition(cfg.num_hidden_layers, layout.pp)
    return PhaseLayout(layout, tuple(tuple(s) for s in stages))


def make_plan(cfg: ModelConfig, prefill: Layout, decode: Layout, *, prefill_stages=None,
              decode_stages=None, best_static: bool = True) -> SeesawPlan:
    """A hand-made decision: 1000 GPU KV tokens, 5000 host tokens, 1000 tok/s vs 800 static."""
    pred = Prediction(PhaseBreakdown(prefill_s=1.0, decode_s=2.0, transition_s=0.1, kv_swap_s=0.05,
                                     transitions=3), tokens_per_s=1000.0, output_tokens_per_s=400.0,
                      memory=MEMORY)
    dec = phase(decode, cfg, decode_stages)
    static = StaticPlan(dec, gpu_kv_tokens=900, decode_max_seqs=32, max_batched_tokens=512,
                        prediction=Prediction(PhaseBreakdown(1.5, 2.0, 0.0, 0.0, 0), 800.0, 300.0, MEMORY))
    return SeesawPlan(prefill=phase(prefill, cfg, prefill_stages), decode=dec, page_size_tokens=16,
                      gpu_kv_tokens=1000, host_kv_buffer_tokens=5000, max_prefill_tokens=2048,
                      decode_max_seqs=64, prefill_to_decode_threshold_tokens=4000,
                      decode_to_prefill_threshold_tokens=100, prediction=pred,
                      best_static=static if best_static else None,
                      solver=SolverInfo(name="cp-sat", status="OPTIMAL", seconds=0.5))


WORKLOAD = {"name": "test", "num_requests": 10, "prompt_tokens": 1000, "output_tokens": 500}


def build(cfg: ModelConfig, prefill: Layout, decode: Layout, **kw) -> ExecutionPlan:
    return build_execution_plan(cfg, make_plan(cfg, prefill, decode, **kw),
                                {"name": "test", "num_gpus": prefill.world_size}, WORKLOAD)


@pytest.fixture(scope="session")
def cfg() -> ModelConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def pp2_tp2(cfg) -> ExecutionPlan:
    """Prefill pp2 (layers [0,2) | [2,4)), decode tp2, on 2 GPUs."""
    return build(cfg, Layout(pp=2), Layout(tp=2))


@pytest.fixture(scope="session")
def dp2(cfg) -> ExecutionPlan:
    """Prefill dp2pp2, decode dp2tp2, on 4 GPUs."""
    return build(cfg, Layout(dp=2, pp=2), Layout(dp=2, tp=2))


@pytest.fixture()
def pp2_tp2_data(pp2_tp2) -> dict:
    """A fresh JSON document of ``pp2_tp2`` to corrupt."""
    return json.loads(pp2_tp2.to_json())


@pytest.fixture()
def dp2_data(dp2) -> dict:
    return json.loads(dp2.to_json())


@pytest.fixture(scope="session")
def build_plan():
    """``build_plan(cfg, prefill_layout, decode_layout, **make_plan_kw) -> ExecutionPlan``."""
    return build


@pytest.fixture(scope="session")
def make_decision():
    """``make_decision(cfg, prefill_layout, decode_layout, **kw) -> SeesawPlan``."""
    return make_plan


@pytest.fixture(scope="session")
def make_config():
    """``make_config(**hf_overrides) -> ModelConfig`` of the tiny model."""
    return tiny_config

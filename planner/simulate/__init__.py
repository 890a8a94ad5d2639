"""Request-level simulation over the workload trace, driven by the cost model's step times.

- :mod:`~seesaw.planner.simulate.runtime_sim`: this project's runtime (the shared replica scheduler of
  :mod:`seesaw.schedule`, so the simulated decisions are the runtime's);
- :mod:`~seesaw.planner.simulate.engine_sim`: a vLLM-style engine (chunked prefill under a token budget,
  paged KV blocks inside a memory fraction, preemption by recompute), the static baseline.
"""
from seesaw.planner.simulate.engine_sim import EngineKnobs, EnginePlan, engine_kv_blocks, simulate_engine
from seesaw.planner.simulate.result import SimRun
from seesaw.planner.simulate.runtime_sim import RuntimePlan, simulate_runtime

__all__ = ["EngineKnobs", "EnginePlan", "RuntimePlan", "SimRun", "engine_kv_blocks", "simulate_engine",
           "simulate_runtime"]

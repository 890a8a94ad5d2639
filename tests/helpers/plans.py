"""Hand-made execution plans for runtime tests (any layouts, no optimizer)."""
from __future__ import annotations

import json
from pathlib import Path

from seesaw.codegen import build_execution_plan
from seesaw.codegen.plan import ExecutionPlan
from seesaw.ir.config import ModelConfig
from seesaw.ir.layout import Layout
from seesaw.ir.passes import even_partition
from seesaw.planner.decision import (MemoryUse, PhaseBreakdown, PhaseLayout, Prediction, SeesawPlan,
                                     SolverInfo)
from seesaw.planner.hardware import load_cluster
from seesaw.planner.workload import Workload


def make_plan(checkpoint: str | Path, prefill: str, decode: str, *, host_buffer_tokens: int = 4096,
              gpu_kv_tokens: int = 4096, max_prefill_tokens: int = 256, decode_max_seqs: int = 16,
              prefill_stages: list[tuple[int, int]] | None = None,
              decode_stages: list[tuple[int, int]] | None = None) -> ExecutionPlan:
    """A plan for the checkpoint's model on ``N x cpu`` with the given layouts (e.g. ``"pp2"``,
    ``"dp2tp2"``). Layouts equal and ``host_buffer_tokens == 0`` give a one-layout plan that prefills
    straight into the device cache."""
    cfg = ModelConfig.from_hf_dict(json.loads((Path(checkpoint) / "config.json").read_text()), name="test-model")
    pre, dec = Layout.parse(prefill), Layout.parse(decode)
    assert pre.world_size == dec.world_size and pre.dp == dec.dp

    def phase(lay: Layout, stages):
        return PhaseLayout(lay, tuple(tuple(s) for s in (stages or even_partition(cfg.num_hidden_layers, lay.pp))))

    mem = MemoryUse(0, 0, 0, 0, 1, 0, 0, 1)
    pred = Prediction(PhaseBreakdown(1.0, 1.0, 0.0, 0.0, 0), 1.0, 1.0, mem)
    plan = SeesawPlan(
        prefill=phase(pre, prefill_stages), decode=phase(dec, decode_stages), page_size_tokens=16,
        gpu_kv_tokens=gpu_kv_tokens, host_kv_buffer_tokens=host_buffer_tokens,
        max_prefill_tokens=max_prefill_tokens, decode_max_seqs=decode_max_seqs,
        prefill_to_decode_threshold_tokens=max(0, host_buffer_tokens - max_prefill_tokens),
        decode_to_prefill_threshold_tokens=0, prediction=pred, best_static=None,
        solver=SolverInfo("hand-made", "OPTIMAL", 0.0))
    cluster = load_cluster(f"{pre.world_size}xcpu")
    return build_execution_plan(cfg, plan, cluster, Workload("test", (16,), (16,)))

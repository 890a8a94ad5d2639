"""Cost-model predictions for what a run actually executed (one step at a time).

The runtime records every returned action (``RunMetrics.steps``: its kind, the sequences' prompt or
context lengths, swapped-in tokens, and the time charged to it). For each record this module evaluates the
same stage-time terms the optimizer uses (:meth:`CostModel.stage_cost`, DESIGN.md section 4) on the exact
batch, under the phase's layout and stage partition:

- a step issued while the replica's pipeline was idle is charged its full latency: the sum of its stage
  times (the pipeline fills);
- a step issued behind others completes one bottleneck-stage time after its predecessor (steady state);
- a decode step also pays the host->device copy of the KV it swaps in (per rank: its stage's layers and KV
  heads), a transition the reload of the target layout's largest stage.

Summing these over a phase gives the predicted phase time that :mod:`seesaw.planner.validation.metrics`
compares with the measured one.
"""
from __future__ import annotations

from dataclasses import dataclass

from seesaw.ir.layout import Layout
from seesaw.ir.ops import PassShape
from seesaw.planner.cost.model import NS, CostModel


@dataclass(frozen=True)
class PhaseShape:
    """A phase's layout and its PP stage partition (layers per stage)."""

    layout: Layout
    counts: tuple[int, ...]

    @classmethod
    def from_stage_layers(cls, layout: Layout, stage_layers) -> "PhaseShape":
        return cls(layout, tuple(int(b) - int(a) for a, b in stage_layers))


def step_parts(kind: str, context_lens: list[int]) -> tuple[PassShape, ...]:
    """One :class:`PassShape` per sequence: prefill ``(1, n, n)`` for a prompt of ``n`` tokens, decode
    ``(1, 1, c)`` for a context of ``c`` tokens (including the new one)."""
    if kind == "prefill":
        return tuple(PassShape(1, n, n) for n in context_lens)
    return tuple(PassShape(1, 1, c) for c in context_lens)


def stage_times_s(cost: CostModel, phase: PhaseShape, kind: str, context_lens: list[int]) -> list[float]:
    """Predicted time (s) of each PP stage for one micro-batch of these sequences."""
    st = cost.stage_cost(phase.layout, step_parts(kind, context_lens))
    return [st.stage_ns(s, n) / NS for s, n in enumerate(phase.counts)]


def swap_in_s(cost: CostModel, phase: PhaseShape, tokens: int) -> float:
    """Host->device copy (s) of ``tokens`` buffered tokens' KV on the slowest rank of ``phase``."""
    if tokens <= 0:
        return 0.0
    per_layer = cost.memory_terms(phase.layout.tp).kv_bytes_per_token_layer * tokens
    return max(cost.host_ns(n * per_layer) for n in phase.counts) / NS


def reload_s(cost: CostModel, phase: PhaseShape) -> float:
    """Weight reload (s) when switching *to* ``phase``: the largest stage's shards over the host link."""
    mem = cost.memory_terms(phase.layout.tp)
    pp = len(phase.counts)
    worst = 0.0
    for s, n in enumerate(phase.counts):
        nbytes = n * mem.layer_weight_bytes
        nbytes += mem.first_weight_bytes if s == 0 else 0
        nbytes += mem.last_weight_bytes if s == pp - 1 else 0
        nbytes -= mem.tied_weight_bytes if pp == 1 else 0
        worst = max(worst, cost.host_ns(nbytes) / NS)
    return worst


def predict_step_s(cost: CostModel, phases: dict[str, PhaseShape], record: dict) -> float:
    """Predicted time charged to one step record (see the module docstring for the rules)."""
    kind = record["kind"]
    if kind == "transition":
        return reload_s(cost, phases[record["target"]])
    phase = phases[kind]
    stages = stage_times_s(cost, phase, kind, record["context_lens"])
    t = sum(stages) if record.get("after_idle", True) else max(stages)
    if kind == "decode":
        t += swap_in_s(cost, phase, record.get("swap_in_tokens", 0))
    return t

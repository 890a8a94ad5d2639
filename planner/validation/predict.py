"""Cost-model predictions for what a run actually executed (one step at a time).

The runtime records every returned action (``RunMetrics.steps``: its kind, the sequences' prompt or
context lengths, swapped-in tokens, and the time charged to it). For each record this module evaluates the
same stage-time terms the optimizer uses (:meth:`CostModel.stage_cost`, DESIGN.md section 4) on the exact
batch, under the phase's layout and stage partition:

- the steps of one replica go through its ``pp`` stages in order, at most ``pp`` in flight (a step is
  issued when the one ``pp`` places earlier has returned); stage ``s`` starts step ``k`` once stage ``s-1``
  has finished it and stage ``s`` has finished step ``k-1``. :func:`pipeline_service_s` runs this
  recurrence; each step is charged the time from the previous step's completion (or from its own issue
  when the pipeline was idle, which then includes the fill) to its completion, as the runtime charges it;
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
    per_layer = cost.memory_terms(phase.layout.tp, phase.layout.ep).kv_bytes_per_token_layer * tokens
    return max(cost.host_ns(n * per_layer) for n in phase.counts) / NS


def reload_s(cost: CostModel, phase: PhaseShape) -> float:
    """Weight reload (s) when switching *to* ``phase``: the largest stage's shards over the host link."""
    return cost.reload_s(phase.layout, phase.counts)


def pipeline_service_s(stage_times: list[list[float]], after_idle: list[bool], window: int) -> list[float]:
    """Time charged to each of a replica's steps, issued in order through a pipeline.

    ``stage_times[k][s]``: step ``k``'s time on stage ``s`` (s); ``after_idle[k]``: the pipeline was empty
    when step ``k`` was issued (it starts at its issue time, taken as the previous completion); ``window``:
    steps in flight at most (step ``k`` is issued when step ``k - window`` has completed).
    Returns ``finish[k] - finish[k-1]`` (the runtime's charge), with ``finish[-1]`` = the issue time of an
    after-idle step.
    """
    out: list[float] = []
    done: list[float] = []  # completion time (last stage) of each step
    stage_free: list[float] = []  # when each stage finishes its latest step
    clock = 0.0
    for k, (times, idle) in enumerate(zip(stage_times, after_idle)):
        if idle or len(stage_free) != len(times):
            clock = done[-1] if done else 0.0
            stage_free = [clock] * len(times)
            issue = clock
        else:
            issue = done[k - window] if k >= window else 0.0
        t = issue
        for s, dt in enumerate(times):
            t = max(t, stage_free[s]) + dt
            stage_free[s] = t
        prev = done[-1] if done else 0.0
        out.append(t - (issue if idle else prev))
        done.append(t)
    return out


def replay_steps_s(cost: CostModel, phases: dict[str, PhaseShape], records: list[dict]) -> list[float]:
    """Predicted time charged to each of one replica's step records, in order (see the module docstring).

    Transitions and swap-ins run alone on the replica and are added to the step they belong to.
    """
    kinds = [r["kind"] for r in records]
    stage_times = []
    for rec in records:
        if rec["kind"] == "transition":
            stage_times.append([reload_s(cost, phases[rec["target"]])])
        else:
            stage_times.append(stage_times_s(cost, phases[rec["kind"]], rec["kind"], rec["context_lens"]))
    out = [0.0] * len(records)
    start = 0
    for k in range(1, len(records) + 1):  # runs of one kind (a phase, or one transition)
        if k == len(records) or kinds[k] != kinds[start] or kinds[k] == "transition":
            kind = kinds[start]
            window = len(stage_times[start]) if kind != "transition" else 1
            seg = pipeline_service_s(stage_times[start:k], [r.get("after_idle", True) for r in records[start:k]],
                                     window)
            for i, t in enumerate(seg):
                rec = records[start + i]
                if kind == "decode":
                    t += swap_in_s(cost, phases["decode"], rec.get("swap_in_tokens", 0))
                out[start + i] = t
            start = k
    return out

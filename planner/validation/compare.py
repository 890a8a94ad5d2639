"""Predicted against measured for one run of the runtime (one layout pair), and over a set of runs.

A run's measurements are ``RunMetrics.as_dict()`` plus its ``steps`` (see ``runtime/engine.py``); its
predictions are the planner's whole-run prediction for the plan it executed and the per-step replay of
:mod:`seesaw.planner.validation.predict`. Phase times are compared per replica and averaged over the
replicas (the model predicts one rank's steps; on a shared CPU the replicas differ by noise, e.g. the
scheduler process shares a core with one of them); whole-run throughput includes the slowest replica.

Each phase also keeps every step's signed error ``(predicted - measured) / measured``; the median of those
is the error of a typical step, which a spell of interference on a shared machine (a few steps of one
replica 40-60% slow while the other runs at its usual pace) moves far less than the phase time.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from seesaw.planner.cost.model import CostModel
from seesaw.planner.validation.metrics import ape, gap_to_best, kendall_tau, mape
from seesaw.planner.validation.predict import PhaseShape, replay_steps_s

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class PhaseResult:
    """One phase of one run: total time (s) charged to its steps, measured and replayed by the model."""

    steps: int
    measured_s: float
    predicted_s: float
    step_errors: tuple[float, ...] = ()  # every step's (predicted - measured) / measured, all replicas

    @property
    def error(self) -> float:
        return ape(self.predicted_s, self.measured_s)

    @property
    def median_step_error(self) -> float:
        """``|median of the per-step signed errors|`` (fraction); NaN without step errors."""
        return abs(statistics.median(self.step_errors)) if self.step_errors else math.nan

    @property
    def measured_step_s(self) -> float:
        return self.measured_s / self.steps

    @property
    def predicted_step_s(self) -> float:
        return self.predicted_s / self.steps


@dataclass(frozen=True)
class RunResult:
    """One layout pair: label (e.g. ``tp2->pp2``), both throughputs (tokens/s, prompt + output), the
    replayed throughput (tokens over the replayed phase times), phases and transitions."""

    label: str
    predicted_tokens_per_s: float
    measured_tokens_per_s: float
    replay_tokens_per_s: float
    phases: dict[str, PhaseResult]
    transitions: int = 0
    transition_measured_s: float = 0.0
    transition_predicted_s: float = 0.0
    chosen: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def throughput_error(self) -> float:
        return ape(self.predicted_tokens_per_s, self.measured_tokens_per_s)


def replay_run(cost: CostModel, phases: dict[str, PhaseShape], steps: list[dict],
               step_errors: dict[str, list[float]] | None = None) -> dict[str, dict[int, float]]:
    """Predicted time per kind ("prefill", "decode", "transition") per replica for the recorded steps;
    appends each step's signed error ``(predicted - measured) / measured`` to ``step_errors[kind]`` when given
    (steps of ``service_s`` 0 skipped)."""
    out: dict[str, dict[int, float]] = {"prefill": {}, "decode": {}, "transition": {}}
    for r in sorted({rec["replica"] for rec in steps}):
        mine = [rec for rec in steps if rec["replica"] == r]
        for rec, t in zip(mine, replay_steps_s(cost, phases, mine)):
            out[rec["kind"]][r] = out[rec["kind"]].get(r, 0.0) + t
            if step_errors is not None and rec["service_s"] > 0:
                step_errors.setdefault(rec["kind"], []).append((t - rec["service_s"]) / rec["service_s"])
    return out


def compare_run(label: str, cost: CostModel, phases: dict[str, PhaseShape], metrics: dict, steps: list[dict],
                predicted_tokens_per_s: float, chosen: bool = False) -> RunResult:
    """Build the :class:`RunResult` of one run (``metrics``: ``RunMetrics.as_dict()``)."""
    errors: dict[str, list[float]] = {}
    replay = replay_run(cost, phases, steps, errors)
    measured: dict[str, dict[int, float]] = {"prefill": {}, "decode": {}, "transition": {}}
    counts: dict[str, dict[int, int]] = {"prefill": {}, "decode": {}, "transition": {}}
    for rec in steps:
        kind, r = rec["kind"], rec["replica"]
        measured[kind][r] = measured[kind].get(r, 0.0) + rec["service_s"]
        counts[kind][r] = counts[kind].get(r, 0) + 1
    results = {}
    for ph in PHASES:
        if measured[ph]:  # mean over replicas: the model predicts one rank's steps (replicas differ by noise)
            reps = list(measured[ph])
            results[ph] = PhaseResult(round(sum(counts[ph][r] for r in reps) / len(reps)),
                                      sum(measured[ph][r] for r in reps) / len(reps),
                                      sum(replay[ph].get(r, 0.0) for r in reps) / len(reps),
                                      tuple(errors.get(ph, ())))
    replay_total = max(sum(replay[k].get(r, 0.0) for k in replay) for r in
                       {r for k in replay for r in replay[k]}) if steps else 0.0
    tokens = metrics["prompt_tokens"] + metrics["output_tokens"]
    return RunResult(
        label=label, predicted_tokens_per_s=predicted_tokens_per_s,
        measured_tokens_per_s=metrics["tokens_per_s"],
        replay_tokens_per_s=tokens / replay_total if replay_total else 0.0,
        phases=results, transitions=metrics.get("transitions", 0),
        transition_measured_s=max(measured["transition"].values(), default=0.0),
        transition_predicted_s=max(replay["transition"].values(), default=0.0), chosen=chosen)


def merge_repeats(runs: list[RunResult]) -> RunResult:
    """One :class:`RunResult` from repeated runs of the same plan: phase times, step counts, throughputs and
    transition times averaged over the repeats (a machine's slow spells then weigh on every layout alike
    when the repeats are interleaved); ``extra["measured_tokens_per_s"]`` keeps each repeat's figure."""
    n = len(runs)
    first = runs[0]
    phases = {}
    for ph in first.phases:
        got = [r.phases[ph] for r in runs if ph in r.phases]
        phases[ph] = PhaseResult(round(sum(p.steps for p in got) / len(got)), sum(p.measured_s for p in got) / len(got),
                                 sum(p.predicted_s for p in got) / len(got),
                                 tuple(e for p in got for e in p.step_errors))
    mean = lambda f: sum(getattr(r, f) for r in runs) / n  # noqa: E731
    return RunResult(
        label=first.label, predicted_tokens_per_s=mean("predicted_tokens_per_s"),
        measured_tokens_per_s=mean("measured_tokens_per_s"), replay_tokens_per_s=mean("replay_tokens_per_s"),
        phases=phases, transitions=first.transitions, transition_measured_s=mean("transition_measured_s"),
        transition_predicted_s=mean("transition_predicted_s"), chosen=first.chosen,
        extra={"measured_tokens_per_s": [r.measured_tokens_per_s for r in runs]})


@dataclass(frozen=True)
class Summary:
    """The figures ``seesaw-validate`` reports over all runs (errors as fractions)."""

    step_mape: dict[str, float]  # per phase: MAPE of phase time (= mean step time) over runs
    median_step_error: dict[str, float]  # per phase: mean over runs of PhaseResult.median_step_error
    throughput_mape: float
    replay_throughput_mape: float
    kendall_tau: float
    chosen: str | None
    best_measured: str
    chosen_gap: float | None  # 1 - measured(chosen) / measured(best)


def summarize(runs: list[RunResult]) -> Summary:
    """MAPEs, Kendall tau and the chosen plan's gap to the measured best over ``runs`` (at least one)."""
    step = {ph: mape([(r.phases[ph].predicted_s, r.phases[ph].measured_s) for r in runs if ph in r.phases])
            for ph in PHASES}
    typical = {ph: [r.phases[ph].median_step_error for r in runs
                    if ph in r.phases and not math.isnan(r.phases[ph].median_step_error)] for ph in PHASES}
    measured = {r.label: r.measured_tokens_per_s for r in runs}
    chosen = next((r.label for r in runs if r.chosen), None)
    best, gap = gap_to_best(measured, chosen) if chosen else (max(measured, key=measured.__getitem__), None)
    return Summary(
        step_mape=step,
        median_step_error={ph: sum(v) / len(v) if v else math.nan for ph, v in typical.items()},
        throughput_mape=mape([(r.predicted_tokens_per_s, r.measured_tokens_per_s) for r in runs]),
        replay_throughput_mape=mape([(r.replay_tokens_per_s, r.measured_tokens_per_s) for r in runs]),
        kendall_tau=kendall_tau([r.predicted_tokens_per_s for r in runs], [r.measured_tokens_per_s for r in runs]),
        chosen=chosen, best_measured=best, chosen_gap=gap)

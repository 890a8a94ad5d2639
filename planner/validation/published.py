"""Predictions against published measurements of real engines (the fidelity report's first part).

Each row of ``bench/data/published.jsonl`` is one measured offline-throughput run that a public source
reports, with its verbatim quote: engine and version, model, GPU and count, layout, workload, metric and
value (:class:`PublishedRun`). :func:`predict_run` plans that very setting with its layout pinned (a static
plan) and predicts the metric twice: with the closed form, and with the request-level simulation of the
row's engine (its knobs tuned as the planner tunes them, since the sources rarely state theirs).
:func:`summarize` gives each prediction's error, the mean absolute percentage error and, per group of runs
that compare layouts on one kind of machine, whether the predictions rank the layouts as measured.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from seesaw.ir.errors import InputError
from seesaw.planner.validation.metrics import kendall_tau

Metric = Literal["output_tokens_per_s", "total_tokens_per_s", "requests_per_s"]
def engine_model(engine: str, version: str | None) -> str:
    """The engine entry (``engines.yaml``) that models a row's engine and version: vLLM before 0.6 is the V0
    engine with synchronous output processing, 0.6-0.7 V0 with it asynchronous, 0.8-0.11 V1 with synchronous
    scheduling, later V1 with asynchronous scheduling; SGLang's scheduler is V1's in kind (chunked prefill
    under a token budget, paged KV, preemption by recompute), synchronous before its 0.4."""
    if engine == "trtllm":
        return "trtllm"
    found = re.search(r"\b(\d+)\.(\d+)", version or "")
    major, minor = (int(found.group(1)), int(found.group(2))) if found else (None, None)
    if major is not None and major >= 1:
        return "vllm"  # both engines' 1.x releases schedule asynchronously
    if engine not in ("vllm", "sglang"):
        return "vllm"  # an engine without an entry of its own: vLLM's current scheduler
    if engine == "sglang":  # a row without a version is an early (2024) release, before 0.4's overlap
        return "vllm-v1-sync" if minor is None or minor < 4 else "vllm"
    if engine == "vllm" and minor is not None:
        return "vllm-v0" if minor < 6 else "vllm-v0.6" if minor < 8 else "vllm-v1-sync" if minor < 12 else "vllm"
    return "vllm"


class PublishedRun(BaseModel):
    """One published measurement (``bench/data/published.jsonl``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    source: str
    quote: str
    engine: str
    engine_version: str | None
    model: str  # as the source names it
    seesaw_model: str  # the shipped config planned for it
    dtype: str
    gpu: str  # catalog name
    num_gpus: int
    interconnect: str
    tp: int
    pp: int
    dp: int
    workload: str  # a --workload spec
    metric: Metric
    value: float
    group: str | None = None
    notes: str = ""
    ep: int = 1  # expert-parallel groups inside each TP group (vLLM's --enable-expert-parallel: ep = tp)


def load_published(path: str | Path) -> list[PublishedRun]:
    """Every row of a JSON Lines file; InputError naming the file, line and field otherwise."""
    src = str(path)
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(PublishedRun(**json.loads(line)))
        except json.JSONDecodeError as e:
            raise InputError(f"line {i}", f"malformed JSON: {e.msg}", src) from None
        except ValidationError as e:
            first = e.errors()[0]
            raise InputError(f"line {i}: {'.'.join(map(str, first['loc']))}", first["msg"], src) from None
    return rows


@dataclass(frozen=True)
class RunPrediction:
    """A row with its predicted metric by the closed form and by simulation (None: did not fit)."""

    run: PublishedRun
    closed_form: float | None
    simulated: float | None
    knobs: str = ""

    def error(self, which: str) -> float | None:
        """``predicted / measured - 1`` of ``which`` ("closed_form" or "simulated")."""
        p = getattr(self, which)
        return None if p is None else p / self.run.value - 1.0


def _metric(pred, workload, metric: Metric) -> float:
    if metric == "output_tokens_per_s":
        return pred.output_tokens_per_s
    if metric == "total_tokens_per_s":
        return pred.tokens_per_s
    return workload.num_requests / pred.breakdown.total_s


def predict_run(run: PublishedRun) -> RunPrediction:
    """Plan the row's setting with its layout pinned and predict its metric (closed form, simulation)."""
    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.ir.layout import Layout  # noqa: PLC0415
    from seesaw.planner.hardware import load_cluster  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan  # noqa: PLC0415
    from seesaw.planner.optimize.space import SearchOptions  # noqa: PLC0415
    from seesaw.planner.workload import load_workload  # noqa: PLC0415

    try:  # a row may name a config not shipped yet (an FP8 MoE checkpoint): no prediction, not a failed report
        cfg = load_model_config(run.seesaw_model)
    except InputError:
        return RunPrediction(run, None, None, f"no prediction: model config {run.seesaw_model!r} not available")
    cluster = load_cluster(f"{run.num_gpus}x{run.gpu}")
    wl = load_workload(run.workload)
    opts = SearchOptions(prefill=Layout(run.dp, run.tp, run.pp, run.ep), static=True)
    out: dict[str, float | None] = {}
    knobs = ""
    for key, simulate in (("closed_form", False), ("simulated", True)):
        try:
            p = plan(cfg, cluster, wl, opts, simulate=simulate, engine=engine_model(run.engine, run.engine_version))
        except InputError:
            out[key] = None
            continue
        out[key] = _metric(p.prediction, wl, run.metric)
        if simulate and p.best_static is not None:
            s = p.best_static
            knobs = f"max_num_seqs {s.decode_max_seqs}, max_num_batched_tokens {s.max_batched_tokens}"
    return RunPrediction(run, out["closed_form"], out["simulated"], knobs)


@dataclass(frozen=True)
class GroupRanking:
    """Runs of one group (layouts compared on one kind of machine): measured and predicted order."""

    group: str
    ids: tuple[str, ...]
    tau_closed_form: float
    tau_simulated: float

    def same_order(self, which: str) -> bool:
        return getattr(self, f"tau_{which}") >= 1.0 - 1e-9


def rankings(preds: list[RunPrediction]) -> list[GroupRanking]:
    """Kendall's tau between measured and predicted values in every group whose runs differ in layout."""
    groups: dict[str, list[RunPrediction]] = {}
    for p in preds:
        if p.run.group:
            groups.setdefault(p.run.group, []).append(p)
    out = []
    for name, members in sorted(groups.items()):
        layouts = {(m.run.num_gpus, m.run.tp, m.run.pp, m.run.dp, m.run.ep) for m in members}
        if len(members) < 2 or len(layouts) < 2 or any(m.closed_form is None or m.simulated is None for m in members):
            continue
        measured = [m.run.value for m in members]
        out.append(GroupRanking(name, tuple(m.run.id for m in members),
                                kendall_tau(measured, [m.closed_form for m in members]),
                                kendall_tau(measured, [m.simulated for m in members])))
    return out


def mape(preds: list[RunPrediction], which: str) -> float:
    """Mean absolute percentage error of ``which`` over the rows it predicted."""
    errs = [abs(e) for p in preds if (e := p.error(which)) is not None]
    return sum(errs) / len(errs) if errs else float("nan")

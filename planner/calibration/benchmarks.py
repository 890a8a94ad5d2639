"""Efficiency terms fitted to end-to-end throughputs a user has already measured (``--from-benchmarks``).

For people who have GPUs but no time for micro-benchmarks: a few offline-throughput runs (vLLM's
``bench throughput --output-json`` results, or a table of model, cluster, layout, workload and tokens/s) fix
the GPU's achieved rates. Each run is predicted by the request-level simulation of its engine
(:func:`~seesaw.planner.simulate.simulate_engine`, static layout, PP stages as even as the layers allow, the
engine's knobs tuned once on the catalog entry and then held), and ``scipy.optimize.least_squares`` scales
the catalog entry's ``memory_efficiency`` and ``matmul_efficiency`` (and ``attention_memory_efficiency`` with
three runs or more) to minimise the log-ratio residuals ``log(predicted / measured)``.

Input files:

- ``.csv`` with the header ``model,cluster,layout,workload,engine,metric,value`` (``engine`` one of
  :mod:`~seesaw.planner.hardware.engines`, ``metric`` one of ``tokens_per_s``, ``output_tokens_per_s``,
  ``requests_per_s``), or with a ``vllm_json`` column instead of ``metric,value`` naming a vLLM
  ``--output-json`` file (relative to the CSV), whose ``tokens_per_second`` is taken;
- ``.jsonl`` rows of ``bench/data/published.jsonl``'s form (:class:`~seesaw.planner.validation.published.PublishedRun`).

Every run must use one GPU type: a profile describes one device. A single run fits ``memory_efficiency``
alone (most runs are decode-bound).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from seesaw.ir.errors import InputError

METRICS = {"tokens_per_s": "tokens_per_s", "total_tokens_per_s": "tokens_per_s",
           "output_tokens_per_s": "output_tokens_per_s", "requests_per_s": "requests_per_s"}
FIT_TERMS = ("memory_efficiency", "matmul_efficiency", "attention_memory_efficiency")


@dataclass(frozen=True)
class BenchmarkRun:
    """One measured run: what ran and its measured ``metric`` (tokens/s, output tokens/s or requests/s)."""

    model: str
    cluster: str  # NxGPU
    layout: str
    workload: str
    engine: str
    metric: str
    value: float
    label: str


def _csv_runs(path: Path) -> list[BenchmarkRun]:
    src = str(path)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    need = {"model", "cluster", "layout", "workload"}
    if not rows or not need <= set(rows[0]):
        raise InputError("header", f"needs columns {', '.join(sorted(need))} and metric,value or vllm_json", src)
    out = []
    for i, r in enumerate(rows, 2):
        if r.get("vllm_json"):
            try:
                result = json.loads((path.parent / r["vllm_json"]).read_text())
                metric, value = "tokens_per_s", float(result["tokens_per_second"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise InputError(f"line {i}: vllm_json", f"cannot read tokens_per_second from "
                                 f"'{r['vllm_json']}': {e}", src) from None
        else:
            metric = METRICS.get((r.get("metric") or "").strip())
            if metric is None:
                raise InputError(f"line {i}: metric", f"'{r.get('metric')}' is not one of {', '.join(METRICS)}", src)
            try:
                value = float(r["value"])
            except (TypeError, ValueError):
                raise InputError(f"line {i}: value", f"'{r.get('value')}' is not a number", src) from None
        if not value > 0:
            raise InputError(f"line {i}: value", f"must be > 0, got {value:g}", src)
        out.append(BenchmarkRun(r["model"], r["cluster"], r["layout"], r["workload"], (r.get("engine") or "vllm").strip(),
                                metric, value, f"line {i}"))
    return out


def load_runs(path: str | Path) -> list[BenchmarkRun]:
    """The runs of a ``.csv`` or ``.jsonl`` file (see the module docstring); InputError naming the file,
    line and field otherwise."""
    from seesaw.planner.validation.published import engine_model, load_published  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise InputError("--from-benchmarks", f"no such file '{path}'")
    if path.suffix.lower() == ".csv":
        return _csv_runs(path)
    if path.suffix.lower() == ".jsonl":
        return [BenchmarkRun(r.seesaw_model, f"{r.num_gpus}x{r.gpu}", f"dp{r.dp}tp{r.tp}pp{r.pp}", r.workload,
                             engine_model(r.engine, r.engine_version), METRICS[r.metric], r.value, r.id)
                for r in load_published(path)]
    raise InputError("--from-benchmarks", f"'{path}' is neither a .csv nor a .jsonl file")


def _gpus(run: BenchmarkRun) -> int:
    """The GPU count of a run's ``NxGPU`` cluster; InputError naming the run otherwise."""
    head, sep, tail = run.cluster.lower().partition("x")
    if not (sep and head.isdigit() and int(head) > 0 and tail):
        raise InputError(f"{run.label}: cluster", f"'{run.cluster}' is not NxGPU (e.g. 8xH100-SXM)")
    return int(head)


@dataclass(frozen=True)
class BenchmarkFit:
    """The fitted entry (a catalog entry mapping), the terms before and after, per-run predictions."""

    gpu: str
    entry: dict
    before: dict[str, float]
    after: dict[str, float]
    runs: tuple[BenchmarkRun, ...]
    predicted_before: tuple[float, ...]
    predicted_after: tuple[float, ...]

    def errors(self, which: str = "after") -> list[float]:
        preds = self.predicted_after if which == "after" else self.predicted_before
        return [p / r.value - 1.0 for p, r in zip(preds, self.runs)]


class _Predictor:
    """Predicts the runs for a GPU spec: knobs tuned once (on the catalog entry), then held."""

    def __init__(self, runs: list[BenchmarkRun], base) -> None:
        from seesaw.ir import load_model_config  # noqa: PLC0415
        from seesaw.ir.layout import Layout  # noqa: PLC0415
        from seesaw.planner.hardware.engines import get_engine  # noqa: PLC0415
        from seesaw.planner.workload import load_workload  # noqa: PLC0415

        self.runs, self.base = runs, base
        self.items = []
        for r in runs:
            n = _gpus(r)
            lay = Layout.parse(r.layout, field="layout")
            if lay.world_size != n:
                raise InputError(f"{r.label}: layout", f"{r.layout} uses {lay.world_size} GPUs, the cluster has {n}")
            cfg = load_model_config(r.model)
            q, rem = divmod(cfg.num_hidden_layers, lay.pp)
            counts = tuple([q + 1] * rem + [q] * (lay.pp - rem))
            self.items.append((r, n, lay, counts, cfg, load_workload(r.workload), get_engine(r.engine)))
        self.knobs = [self._tune(i) for i in range(len(runs))]

    def _cost(self, i: int, gpu):
        from seesaw.planner.cost.model import CostModel  # noqa: PLC0415
        from seesaw.planner.hardware.cluster import build_cluster  # noqa: PLC0415

        r, n, lay, counts, cfg, wl, engine = self.items[i]
        return CostModel(cfg, build_cluster(gpu, n, "--from-benchmarks", "benchmark run"), wl, engine)

    def _tune(self, i: int):
        from seesaw.planner.decision import PhaseLayout, StaticPlan  # noqa: PLC0415
        from seesaw.planner.optimize.rank import tune_static  # noqa: PLC0415
        from seesaw.planner.optimize.space import to_stage_layers  # noqa: PLC0415

        r, n, lay, counts, *_, engine = self.items[i]
        static = StaticPlan(PhaseLayout(lay, to_stage_layers(counts)), 0, 0, 0, None)  # only the layout is read
        tuned = tune_static(self._cost(i, self.base), static, engine)
        if tuned is None:
            raise InputError(f"{r.label}", f"{r.model} with {r.layout} does not fit on {r.cluster}")
        return tuned.knobs

    def predict(self, gpu) -> list[float]:
        from seesaw.planner.simulate import EnginePlan, engine_kv_blocks, simulate_engine  # noqa: PLC0415

        out = []
        for i, (r, n, lay, counts, cfg, wl, engine) in enumerate(self.items):
            cost = self._cost(i, gpu)
            blocks = engine_kv_blocks(cost, lay, counts, self.knobs[i], engine.memory_fraction_of)
            run = simulate_engine(cost, EnginePlan(lay, counts, self.knobs[i], max(1, blocks)), engine)
            value = {"tokens_per_s": run.tokens_per_s, "output_tokens_per_s": run.output_tokens_per_s,
                     "requests_per_s": run.requests / run.wall_s}[r.metric]
            out.append(value)
        return out


def fit_benchmarks(runs: list[BenchmarkRun], source: str = "the benchmark file") -> BenchmarkFit:
    """Fit the efficiency terms (see the module docstring). Raises InputError when the runs use more than
    one GPU type or none can be predicted."""
    from seesaw.planner.hardware import get_gpu  # noqa: PLC0415

    if not runs:
        raise InputError("--from-benchmarks", "no runs in the file")
    for r in runs:
        _gpus(r)
    gpus = {r.cluster.lower().split("x", 1)[1] for r in runs}
    if len({get_gpu(g).name for g in gpus}) != 1:
        raise InputError("--from-benchmarks", f"the runs use several GPU types ({', '.join(sorted(gpus))}); "
                         "a profile describes one: give one file per GPU type")
    base = get_gpu(next(iter(gpus)))
    predictor = _Predictor(runs, base)
    terms = FIT_TERMS[:2] if len(runs) < 3 else FIT_TERMS
    before = {t: getattr(base, t) for t in terms}
    measured = np.array([r.value for r in runs])

    def spec(x: np.ndarray):
        return base.model_copy(update={t: float(min(1.0, v)) for t, v in zip(terms, x)})

    first = np.array(predictor.predict(base))
    if len(runs) == 1:
        terms = terms[:1]  # one run fixes one term: memory, the decode-bound rate of most runs
    sol = least_squares(lambda x: np.log(np.array(predictor.predict(spec(x))) / measured),
                        np.array([before[t] for t in terms]), bounds=([0.05] * len(terms), [1.0] * len(terms)),
                        diff_step=0.05, max_nfev=12 * len(terms), xtol=1e-3, ftol=1e-3)
    fitted = spec(sol.x)
    after = {t: float(getattr(fitted, t)) for t in terms}
    preds = predictor.predict(fitted)
    errs = [p / m - 1 for p, m in zip(preds, measured)]
    rms = math.sqrt(sum(e * e for e in errs) / len(errs))
    entry = fitted.model_dump(exclude={"name", "aliases", "source"})
    entry["source"] = {**base.source, "efficiency": (
        f"fitted by seesaw-calibrate --from-benchmarks to {len(runs)} end-to-end throughputs of {source} "
        f"({', '.join(terms)} scaled from catalog entry {base.name}; residual RMS {rms:.1%}, max "
        f"{max(abs(e) for e in errs):.1%}); other terms: {base.source.get('efficiency', 'catalog entry')}")}
    return BenchmarkFit(base.name, entry, {t: before[t] for t in terms}, after, tuple(runs), tuple(first), tuple(preds))

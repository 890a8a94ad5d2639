"""Plan every cluster at every sweep point; one :class:`Row` per cluster x point x system; ``results.csv``.

Systems at each point: ``seesaw`` (the planner's choice, which may keep one layout when re-sharding does
not pay) and every feasible static layout (``plan(..., SearchOptions(static=True, prefill=layout))``).
Each cluster also gets a ``base`` point (no field changed). Cost per million output tokens is
``usd_per_gpu_hour * num_gpus / 3600 / output_tokens_per_s * 1e6``.
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

from seesaw.ir import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.planner.cost.model import CostModel
from seesaw.planner.decision import Prediction
from seesaw.planner.hardware import Cluster
from seesaw.planner.optimize.solve import plan
from seesaw.planner.optimize.space import SearchOptions
from seesaw.planner.whatif.sweep import Sweep, apply_point
from seesaw.planner.workload import Workload

BASE = "base"


@dataclass
class Row:
    """One system at one point. Throughputs tokens/s (all replicas); times seconds; memory GB (1e9) per GPU.

    ``system`` is ``seesaw`` or a static layout name (``dp4tp2``); numbers are NaN when ``feasible`` is
    False (``note`` says why). ``multiplier`` is NaN for absolute sweeps and the base point.
    """

    cluster: str
    sweep_field: str
    sweep_value: float
    multiplier: float
    system: str
    feasible: bool
    prefill_layout: str
    decode_layout: str
    tokens_per_s: float
    output_tokens_per_s: float
    speedup_vs_best_static: float
    is_best_static: bool
    memory_gb_per_gpu: float
    prefill_s: float
    decode_s: float
    transition_s: float
    kv_swap_s: float
    total_s: float
    usd_per_m_output_tokens: float
    note: str = ""


COLUMNS = [f.name for f in fields(Row)]
_NAN = float("nan")


def _row(name: str, field: str, value: float, mult: float, system: str, pred: Prediction | None,
         pre: str, dec: str, cluster: Cluster, price: float | None, note: str = "") -> Row:
    if pred is None:
        return Row(name, field, value, mult, system, False, pre, dec, *([_NAN] * 3), False, *([_NAN] * 7), note)
    bd = pred.breakdown
    usd = price * cluster.num_gpus / 3600 / pred.output_tokens_per_s * 1e6 if price is not None else _NAN
    return Row(name, field, value, mult, system, True, pre, dec, pred.tokens_per_s, pred.output_tokens_per_s,
               _NAN, False, pred.memory.device_total_bytes / 1e9, bd.prefill_s, bd.decode_s, bd.transition_s,
               bd.kv_swap_s, bd.total_s, usd, note)


def plan_point(cfg: ModelConfig, name: str, cluster: Cluster, workload: Workload, field: str, value: float,
               mult: float, price: float | None, time_limit_s: float = 10.0, with_static: bool = True) -> list[Row]:
    """Rows for one point: Seesaw first, then every static layout; speedups against the best static one.

    ``with_static=False`` plans Seesaw alone (one row, speedup NaN): about half the time, for questions
    that need only the best plan (the Seesaw plan keeps one layout when that is faster).
    """
    try:
        sp = plan(cfg, cluster, workload, time_limit_s=time_limit_s)
        rows = [_row(name, field, value, mult, "seesaw", sp.prediction, str(sp.prefill.layout),
                     str(sp.decode.layout), cluster, price, "; ".join(sp.notes))]
    except InputError as e:
        rows = [_row(name, field, value, mult, "seesaw", None, "", "", cluster, price, str(e))]
    if not with_static:
        return rows
    cost = CostModel(cfg, cluster, workload)
    for dp in cost.dp_degrees():
        for lay in cost.candidate_layouts(dp):
            try:
                st = plan(cfg, cluster, workload, SearchOptions(static=True, prefill=lay), time_limit_s=time_limit_s)
                rows.append(_row(name, field, value, mult, str(lay), st.prediction, str(lay), str(lay), cluster, price))
            except InputError as e:
                rows.append(_row(name, field, value, mult, str(lay), None, str(lay), str(lay), cluster, price, str(e)))
    statics = [r for r in rows[1:] if r.feasible]
    if statics:
        best = max(statics, key=lambda r: r.tokens_per_s)
        best.is_best_static = True
        for r in rows:
            if r.feasible:
                r.speedup_vs_best_static = r.tokens_per_s / best.tokens_per_s
    return rows


def point_list(clusters: list[tuple[str, Cluster]], workload: Workload, sweeps: list[Sweep]):
    """Every ``(name, cluster, workload, field, value, multiplier)`` to plan: base points, then sweeps."""
    out = []
    for name, cl in clusters:
        out.append((name, cl, workload, BASE, _NAN, _NAN))
        for sw in sweeps:
            for value, mult in sw.points(cl, workload):
                c2, w2 = apply_point(sw, value, cl, workload)
                out.append((name, c2, w2, sw.field, value, _NAN if mult is None else mult))
    return out


def run_whatif(cfg: ModelConfig, clusters: list[tuple[str, Cluster]], workload: Workload, sweeps: list[Sweep],
               prices: dict[str, float] | None = None, time_limit_s: float = 10.0,
               on_point: Callable[[int, int], None] | None = None, with_static: bool = True) -> list[Row]:
    """Plan all points; ``clusters`` is ``[(display name, Cluster)]``, ``prices`` USD per GPU-hour by name.

    ``on_point(done, total)`` is called after each point (progress bars); ``with_static=False`` plans only
    the Seesaw row of each point (see :func:`plan_point`). Raises :class:`InputError` for an invalid sweep
    point (before planning anything).
    """
    prices = prices or {}
    pts = point_list(clusters, workload, sweeps)
    rows: list[Row] = []
    for i, (name, cl, wl, field, value, mult) in enumerate(pts):
        rows += plan_point(cfg, name, cl, wl, field, value, mult, prices.get(name), time_limit_s, with_static)
        if on_point:
            on_point(i + 1, len(pts))
    return rows


def row_dict(row: Row) -> dict:
    """The row's fields as a JSON-ready dict (NaN as None), keyed as :data:`COLUMNS`."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(row).items()}


def read_csv(path: Path) -> list[Row]:
    """The rows :func:`write_csv` wrote to ``path`` (empty cells back to NaN).

    Raises :class:`InputError` naming the file when it cannot be read or is not a results file of this
    version (its header differs from :data:`COLUMNS`, or a cell does not parse).
    """
    kinds = {f.name: f.type for f in fields(Row)}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != COLUMNS:
                raise InputError("results", "is not a seesaw-whatif results.csv of this version (its columns differ)",
                                 str(path))
            rows = []
            for line, raw in enumerate(reader, start=2):
                try:
                    rows.append(Row(**{k: _cell(kinds[k], v) for k, v in raw.items()}))
                except (TypeError, ValueError):
                    raise InputError(f"line {line}", "a cell does not parse as its column's type", str(path)) from None
    except OSError as e:
        raise InputError("results", f"cannot read '{path}': {e.strerror}") from None
    return rows


def _cell(kind: str, text: str):
    if kind == "float":
        return float(text) if text != "" else _NAN
    if kind == "bool":
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    return text


def write_csv(rows: list[Row], path: Path) -> None:
    """Write rows to ``path`` with a header of :data:`COLUMNS`; NaN is written as an empty cell."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(r).items()})

"""``--sweep FIELD=SPEC`` parsing and applying one sweep point to a cluster or a workload.

SPEC forms (``--points N`` sets how many points a range has, default 7):

- ``0.1x:50x``: multipliers of the base value, ``N`` geometric points from A to B;
- ``A:B``: absolute values, ``N`` evenly spaced (linear) points from A to B;
- ``a,b,c`` (or one value ``a``): exactly these values; all multipliers (``2x,4x``) or all absolute.

Fields: the numeric :class:`~seesaw.planner.hardware.Cluster` fields in :data:`CLUSTER_FIELDS`, and the
synthetic-workload fields ``output_len`` (tokens per request) and ``decode_to_prefill_ratio`` (output
length / input length). A workload sweep keeps the request count and a fixed input length (the
workload's mean prompt length, rounded) and gives every request the same output length, at least 1 token
(``Workload`` requires >= 1, so ratio 0 means one output token).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import ValidationError

from seesaw.ir.errors import InputError
from seesaw.planner.hardware import Cluster
from seesaw.planner.workload import Workload

SOURCE = "--sweep"
DEFAULT_POINTS = 7
#: Numeric cluster fields a sweep may change, with their type and smallest allowed value.
CLUSTER_FIELDS: dict[str, tuple[type, float]] = {
    "gpu_link_gb_per_s": (float, 0.0), "host_link_gb_per_s": (float, 0.0), "host_memory_gb": (float, 0.0),
    "num_gpus": (int, 1.0), "node_link_gb_per_s": (float, 0.0), "gpu_link_latency_us": (float, 0.0),
    "node_link_latency_us": (float, 0.0), "gpus_per_node": (int, 1.0),
}
WORKLOAD_FIELDS = ("output_len", "decode_to_prefill_ratio")
#: Fields that measured collective curves (``GPUSpec.allreduce_us``) would override inside a node.
LINK_FIELDS = ("gpu_link_gb_per_s", "gpu_link_latency_us")
#: Axis labels of the sweepable fields (units in parentheses).
FIELD_LABELS = {
    "gpu_link_gb_per_s": "GPU-GPU link bandwidth (GB/s)", "host_link_gb_per_s": "host-GPU link bandwidth (GB/s)",
    "host_memory_gb": "host memory per node (GB)", "num_gpus": "GPUs", "node_link_gb_per_s":
    "node-node link bandwidth (GB/s)", "gpu_link_latency_us": "GPU-GPU link latency (us)",
    "node_link_latency_us": "node-node link latency (us)", "gpus_per_node": "GPUs per node",
    "output_len": "output length (tokens)", "decode_to_prefill_ratio": "output / prompt tokens (decode-to-prefill ratio)",
}
_EXCLUSIVE_ZERO = {"gpu_link_gb_per_s", "host_link_gb_per_s", "host_memory_gb", "node_link_gb_per_s"}


@dataclass(frozen=True)
class Sweep:
    """One parsed ``--sweep``: ``field``, its ``values`` (multipliers when ``relative``) and the spec text."""

    field: str
    values: tuple[float, ...]
    relative: bool
    spec: str

    @property
    def is_workload(self) -> bool:
        """True for ``output_len`` / ``decode_to_prefill_ratio`` sweeps."""
        return self.field in WORKLOAD_FIELDS

    def base_value(self, cluster: Cluster, workload: Workload) -> float:
        """The unswept value of the field for this cluster and workload (what multipliers scale)."""
        if self.field == "output_len":
            return workload.mean_output_len
        if self.field == "decode_to_prefill_ratio":
            return workload.mean_output_len / _input_len(workload)
        return float(getattr(cluster, self.field))

    def points(self, cluster: Cluster, workload: Workload) -> list[tuple[float, float | None]]:
        """``[(absolute value, multiplier or None)]`` for this cluster; integer fields rounded, deduplicated."""
        base = self.base_value(cluster, workload)
        out: list[tuple[float, float | None]] = []
        for v in self.values:
            value = v * base if self.relative else v
            if self.field in ("num_gpus", "gpus_per_node", "output_len"):
                value = float(max(1, round(value)))
            if all(value != o[0] for o in out):
                out.append((value, v if self.relative else None))
        return out


def _input_len(workload: Workload) -> int:
    return max(1, round(workload.mean_prompt_len))


def _number(text: str, field: str) -> tuple[float, bool]:
    t = text.strip()
    rel = t.lower().endswith("x")
    try:
        v = float(t[:-1] if rel else t)
    except ValueError:
        raise InputError(field, f"'{text}' is not a number (or a multiplier like 2x)", SOURCE) from None
    if not math.isfinite(v):
        raise InputError(field, f"'{text}' is not a finite number", SOURCE)
    return v, rel


def _check_value(field: str, v: float, rel: bool) -> None:
    if rel:
        if v <= 0:
            raise InputError(field, f"multiplier {v:g}x must be > 0", SOURCE)
        return
    if field in CLUSTER_FIELDS:
        kind, lo = CLUSTER_FIELDS[field]
        if field in _EXCLUSIVE_ZERO and v <= 0:
            raise InputError(field, f"must be > 0, got {v:g}", SOURCE)
        if v < lo or (kind is int and v != int(v)):
            raise InputError(field, f"must be {'an integer ' if kind is int else ''}>= {lo:g}, got {v:g}", SOURCE)
    elif field == "output_len" and (v < 1 or v != int(v)):
        raise InputError(field, f"must be an integer >= 1, got {v:g}", SOURCE)
    elif v < 0:
        raise InputError(field, f"must be >= 0, got {v:g}", SOURCE)


def parse_sweep(text: str, points: int = DEFAULT_POINTS) -> Sweep:
    """Parse ``FIELD=SPEC`` (forms in the module docstring) into a :class:`Sweep`.

    Raises :class:`InputError` (source ``--sweep``, field = the swept field or ``sweep``) for a missing
    ``=``, an unknown field, a non-number, mixed multipliers and absolute values, out-of-range values,
    ``A > B`` in a range, or ``points < 2`` for a range.
    """
    field, eq, spec = (text or "").partition("=")
    field, spec = field.strip(), spec.strip()
    if not eq or not field or not spec:
        raise InputError("sweep", f"'{text}' must be FIELD=SPEC, e.g. gpu_link_gb_per_s=0.1x:50x", SOURCE)
    known = (*CLUSTER_FIELDS, *WORKLOAD_FIELDS)
    if field not in known:
        raise InputError(field, f"not a sweepable field; expected one of {', '.join(known)}", SOURCE)
    if ":" in spec:
        ends = spec.split(":")
        if len(ends) != 2:
            raise InputError(field, f"range '{spec}' must be A:B", SOURCE)
        (a, ra), (b, rb) = _number(ends[0], field), _number(ends[1], field)
        if ra != rb:
            raise InputError(field, f"range '{spec}' mixes multipliers and absolute values", SOURCE)
        for v in (a, b):
            _check_value(field, v, ra)
        if a > b:
            raise InputError(field, f"range '{spec}' runs backwards (A > B)", SOURCE)
        if points < 2:
            raise InputError("--points", f"a range needs at least 2 points, got {points}", SOURCE)
        if ra:  # geometric: a * (b/a)^(i/(n-1))
            vals = tuple(a * (b / a) ** (i / (points - 1)) for i in range(points))
        else:
            vals = tuple(a + (b - a) * i / (points - 1) for i in range(points))
        return Sweep(field, vals, ra, spec)
    parsed = [_number(p, field) for p in spec.split(",")]
    if len({r for _, r in parsed}) > 1:
        raise InputError(field, f"list '{spec}' mixes multipliers and absolute values", SOURCE)
    for v, r in parsed:
        _check_value(field, v, r)
    return Sweep(field, tuple(v for v, _ in parsed), parsed[0][1], spec)


def apply_point(sweep: Sweep, value: float, cluster: Cluster, workload: Workload) -> tuple[Cluster, Workload]:
    """The cluster and workload with ``sweep.field`` set to ``value`` (absolute).

    Cluster fields go through ``model_copy(update=...)`` and are re-validated (``model_copy`` alone skips
    validation); an invalid result (e.g. ``num_gpus`` not a multiple of ``gpus_per_node``) raises
    :class:`InputError` naming the field.
    """
    if sweep.is_workload:
        in_len = _input_len(workload)
        out = value if sweep.field == "output_len" else value * in_len
        out_len = max(1, round(out))
        n = workload.num_requests
        return cluster, Workload(f"random:{in_len}:{out_len}:{n}", (in_len,) * n, (out_len,) * n)
    kind = CLUSTER_FIELDS[sweep.field][0]
    upd = {sweep.field: kind(value),
           "source": {**cluster.source, sweep.field: f"what-if sweep {sweep.field}={sweep.spec}"}}
    gpu = cluster.gpu
    if sweep.field in LINK_FIELDS and (gpu.allreduce_us or gpu.allgather_us):
        # measured collective curves would ignore the swept link figure: the sweep uses the alpha-beta model
        upd["gpu"] = gpu.model_copy(update={"allreduce_us": {}, "allgather_us": {}})
        upd["source"][sweep.field] += (f" (the {gpu.name}'s measured collective curves replaced by the alpha-beta "
                                       "model, so that the swept figure decides)")
    try:
        new = Cluster.model_validate(cluster.model_copy(update=upd).model_dump())
    except ValidationError as e:
        msg = e.errors()[0].get("msg", str(e))
        raise InputError(sweep.field, f"value {value:g} gives an invalid cluster: {msg}", SOURCE) from None
    return new, workload

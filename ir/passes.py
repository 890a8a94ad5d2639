"""Graph passes: tensor parallelism (collectives), pipeline parallelism (stages, send/recv), lowering.

Each pass returns a new :class:`ModelGraph` and keeps node insertion order = program order: an inserted
op comes right after the op that produces its input.

- :func:`apply_tp` (Megatron-LM): an ``all_reduce`` after each row-parallel linear (o_proj, down_proj), after
  a mixture of experts (its down projections are row-parallel) and after the vocab-parallel embedding (each rank fills only its vocab rows), an ``all_gather`` of the
  vocab-parallel lm-head logits. Two all-reduces per layer, as DESIGN.md section 4 counts them.
- :func:`apply_pp`: node attribute ``stage`` from contiguous layer ranges (embedding on the first stage,
  final norm and lm head on the last) and one ``send``/``recv`` pair per tensor crossing a stage boundary
  (the residual stream; all its crossing edges go through that pair).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import networkx as nx

from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.ir.graph import ModelGraph, build_graph
from seesaw.ir.layout import Layout
from seesaw.ir.ops import Op, OpKind, ShardRule
from seesaw.ir.sharding import check_tp


def _needs_all_reduce(op: Op) -> bool:
    if op.kind in (OpKind.EMBEDDING, OpKind.MOE_EXPERTS):
        return True
    return op.kind is OpKind.LINEAR and op.weights[0].shard is ShardRule.ROW


def _with_ep(op: Op, ep: int) -> Op:
    """A mixture of experts' op with its expert tensors marked ``ep``-way expert parallel (``dims["ep"]``)."""
    weights = tuple(replace(w, ep=ep) if w.expert is not None else w for w in op.weights)
    return replace(op, weights=weights, dims={**op.dims, "ep": ep})


def apply_tp(graph: ModelGraph, tp: int, ep: int = 1) -> ModelGraph:
    """A copy of ``graph`` for ``tp``-way tensor parallelism, the experts of a mixture of experts split over
    ``ep`` expert groups of each TP group (:mod:`seesaw.ir.layout`); every node gets attributes ``tp`` and ``ep``.

    With ``tp == 1`` no collectives are inserted; expert parallelism keeps the one all-reduce after the experts
    (each rank sums its experts' outputs; vLLM's expert parallelism without data-parallel attention does the
    same). Raises :class:`InputError` (field ``tp`` or ``ep``) when :func:`check_tp` rejects the degrees or the
    graph already has TP applied.
    """
    if "tp" in graph.g.graph:
        raise InputError("tp", "tensor parallelism is already applied to this graph")
    check_tp(graph.cfg, tp, ep)
    old, new = graph.g, nx.DiGraph()
    new.graph.update(old.graph, tp=tp, ep=ep)
    redirect: dict[str, str] = {}
    for name, data in old.nodes(data=True):
        op: Op = data["op"]
        if op.kind is OpKind.MOE_EXPERTS and ep > 1:
            op = _with_ep(op, ep)
        new.add_node(name, **{**data, "op": op}, tp=tp, ep=ep)
        if tp == 1:
            continue
        if _needs_all_reduce(op):
            kind, suffix, dims = OpKind.ALL_REDUCE, "all_reduce", {"hidden": graph.cfg.hidden_size}
        elif op.kind is OpKind.LM_HEAD:
            kind, suffix, dims = OpKind.ALL_GATHER, "all_gather", {"vocab": graph.cfg.vocab_size}
        else:
            continue
        coll = f"{name}.{suffix}"
        extra = {k: data[k] for k in ("stage",) if k in data}
        new.add_node(coll, op=Op(coll, kind, op.layer, (), dims), section=data["section"], tp=tp, **extra)
        redirect[name] = coll
    for u, v in old.edges:
        new.add_edge(redirect.get(u, u), v)
    for u, coll in redirect.items():
        new.add_edge(u, coll)
    return ModelGraph(graph.cfg, new)


def _check_stage_layers(stage_layers: Sequence, num_layers: int) -> list[tuple[int, int]]:
    if not isinstance(stage_layers, Sequence) or isinstance(stage_layers, str) or not stage_layers:
        raise InputError("stage_layers", f"expected a non-empty list of (start, stop), got {stage_layers!r}")
    out: list[tuple[int, int]] = []
    expect = 0
    for s, item in enumerate(stage_layers):
        try:
            start, stop = item
        except (TypeError, ValueError):
            raise InputError("stage_layers", f"stage {s}: {item!r} is not a (start, stop) pair") from None
        if any(isinstance(x, bool) or not isinstance(x, int) for x in (start, stop)):
            raise InputError("stage_layers", f"stage {s}: {item!r} is not a pair of integers")
        if start != expect:
            raise InputError("stage_layers", f"stage {s} starts at layer {start}, expected {expect} "
                             "(stages must be contiguous and start at 0)")
        if stop <= start:
            raise InputError("stage_layers", f"stage {s} ({start}, {stop}) holds no layer")
        out.append((start, stop))
        expect = stop
    if expect != num_layers:
        raise InputError("stage_layers", f"stages cover layers 0..{expect}, the model has {num_layers}")
    return out


def even_partition(num_layers: int, pp: int) -> list[tuple[int, int]]:
    """Split ``num_layers`` into ``pp`` contiguous ``(start, stop)`` stages differing by at most one layer.

    The extra layers of an uneven split go to the stages before the last, from the second-to-last
    backwards, since the last stage also runs the final norm and lm head (vLLM's ``get_pp_indices``).
    Raises :class:`InputError` (field ``pp``) unless ``1 <= pp <= num_layers``.
    """
    if isinstance(pp, bool) or not isinstance(pp, int) or not 1 <= pp <= num_layers:
        raise InputError("pp", f"pp={pp!r} must be between 1 and the {num_layers} layers")
    sizes = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        sizes[-i] += 1
    bounds, start = [], 0
    for n in sizes:
        bounds.append((start, start + n))
        start += n
    return bounds


def apply_pp(graph: ModelGraph, stage_layers: Sequence[tuple[int, int]]) -> ModelGraph:
    """A copy of ``graph`` split into pipeline stages; every node gets attribute ``stage``.

    ``stage_layers[s] = (start, stop)`` are the layers of stage ``s`` (uneven allowed). Raises
    :class:`InputError` (field ``stage_layers``) unless they are contiguous, cover every layer, and give
    each stage at least one layer, or when stages are already assigned.
    """
    if "stage_layers" in graph.g.graph:
        raise InputError("stage_layers", "pipeline stages are already assigned to this graph")
    stages = _check_stage_layers(stage_layers, graph.cfg.num_hidden_layers)
    layer_stage = {i: s for s, (a, b) in enumerate(stages) for i in range(a, b)}
    last = len(stages) - 1
    old = graph.g

    def stage_of(data: dict) -> int:
        if data["section"] == "pre":
            return 0
        if data["section"] == "post":
            return last
        return layer_stage[data["op"].layer]

    stage = {n: stage_of(d) for n, d in old.nodes(data=True)}
    new = nx.DiGraph()
    new.graph.update(old.graph, stage_layers=stages)
    recv_of: dict[tuple[str, int], str] = {}
    hidden = graph.cfg.hidden_size
    for name, data in old.nodes(data=True):
        new.add_node(name, **data, stage=stage[name])
        src = stage[name]
        targets: dict[int, list[str]] = {}
        for v in old.successors(name):
            if stage[v] != src:
                targets.setdefault(stage[v], []).append(v)
        for dst, vs in sorted(targets.items()):
            op: Op = data["op"]
            dims = {"hidden": hidden, "src_stage": src, "dst_stage": dst}
            send, recv = f"{name}.send[{src}->{dst}]", f"{name}.recv[{src}->{dst}]"
            first = vs[0]
            extra = {"tp": data["tp"]} if "tp" in data else {}
            new.add_node(send, op=Op(send, OpKind.SEND, op.layer, (), dims), section=data["section"],
                         stage=src, **extra)
            new.add_node(recv, op=Op(recv, OpKind.RECV, old.nodes[first]["op"].layer, (), dims),
                         section=old.nodes[first]["section"], stage=dst, **extra)
            new.add_edge(name, send)
            new.add_edge(send, recv)
            recv_of[(name, dst)] = recv
    for u, v in old.edges:
        new.add_edge(recv_of.get((u, stage[v]), u), v)
    return ModelGraph(graph.cfg, new)


def stage_ops(graph: ModelGraph, stage: int) -> list:
    """Ops of pipeline stage ``stage`` in program order (``list[Op]``).

    Raises :class:`InputError` (field ``stage``) when the graph has no stages or ``stage`` is out of range.
    """
    stages = graph.g.graph.get("stage_layers")
    if stages is None:
        raise InputError("stage", "the graph has no pipeline stages (run apply_pp first)")
    if not 0 <= stage < len(stages):
        raise InputError("stage", f"{stage} is outside 0..{len(stages) - 1}")
    return [d["op"] for _, d in graph.g.nodes(data=True) if d["stage"] == stage]


def lower(cfg: ModelConfig, layout: Layout,
          stage_layers: Sequence[tuple[int, int]] | None = None) -> ModelGraph:
    """Build ``cfg``'s graph and apply ``layout.tp`` tensor (``layout.ep`` expert) and ``layout.pp`` pipeline
    parallelism.

    ``stage_layers`` defaults to :func:`even_partition`; when given it must have ``layout.pp`` stages.
    Data parallelism replicates the graph and does not change it. Raises :class:`InputError` (fields
    ``tp``, ``pp``, ``stage_layers``).
    """
    if stage_layers is None:
        stage_layers = even_partition(cfg.num_hidden_layers, layout.pp)
    elif isinstance(stage_layers, Sequence) and len(stage_layers) != layout.pp:
        raise InputError("stage_layers",
                         f"{len(stage_layers)} stages given for layout {layout} (pp={layout.pp})")
    return apply_pp(apply_tp(build_graph(cfg), layout.tp, layout.ep), stage_layers)

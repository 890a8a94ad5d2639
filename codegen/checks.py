"""Internal-consistency checks of a schema-valid :class:`~seesaw.codegen.plan.ExecutionPlan`.

:func:`check_plan` raises :class:`~seesaw.ir.errors.InputError` whose field is the path of the offending
value in the plan document (``decode.ranks[3].program[12].group``, ``prefill.ranks[0].weight_shards[
model.norm.weight]``). The model's tensors come from the IR rebuilt from ``model.fingerprint`` (the
fingerprint holds every field that fixes a tensor shape, see ``ModelConfig.fingerprint``), so the shard
maps are checked against the same rules the runtime's loader uses.
"""
from __future__ import annotations

import math
from collections import Counter

from pydantic import ValidationError

from seesaw.codegen.plan import COLLECTIVE_OPS, ExecutionPlan, LayoutSpec, PhasePlan, ShardSlice
from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.ir.graph import ModelGraph, build_graph
from seesaw.ir.layout import Layout
from seesaw.ir.ops import WeightSpec
from seesaw.ir.sharding import holds

_GB = 1e9
_REL_TOL = 1e-6


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-9)


def config_from_plan(plan: ExecutionPlan) -> ModelConfig:
    """The :class:`ModelConfig` described by ``plan.model`` (shape fields from the fingerprint; fields
    that fix no tensor shape, like ``max_position_embeddings``, get placeholders).

    Raises :class:`InputError` (field ``model.fingerprint``) when the fingerprint is not a valid config.
    """
    fp = {k: v for k, v in plan.model.fingerprint.items() if k != "name"}
    fp.setdefault("max_position_embeddings", 1)
    try:
        return ModelConfig(name=plan.model.name, **fp)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise InputError(f"model.fingerprint.{where}" if where else "model.fingerprint", e["msg"]) from None


def cluster_num_gpus(cluster: dict) -> int:
    """``cluster["num_gpus"]`` (written by codegen). Raises :class:`InputError` (``cluster.num_gpus``)."""
    n = cluster.get("num_gpus")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("cluster.num_gpus", f"missing or not a positive integer (got {n!r})")
    return n


def _check_stages(ph: PhasePlan, name: str, num_layers: int) -> None:
    if len(ph.stage_layers) != ph.layout.pp:
        raise InputError(f"{name}.stage_layers", f"{len(ph.stage_layers)} stages for pp={ph.layout.pp}")
    expect = 0
    for s, (start, stop) in enumerate(ph.stage_layers):
        if start != expect:
            raise InputError(f"{name}.stage_layers[{s}]", f"starts at layer {start}, expected {expect} "
                             "(stages must be contiguous from layer 0)")
        if stop <= start:
            raise InputError(f"{name}.stage_layers[{s}]", f"[{start}, {stop}) holds no layer")
        expect = stop
    if expect != num_layers:
        raise InputError(f"{name}.stage_layers", f"stages cover layers 0..{expect}, the model has {num_layers}")


def _listed(ph: PhasePlan, layout: Layout) -> int:
    """How many ranks ``ph.ranks`` must hold: all of them, or DP replica 0's (the others are expanded)."""
    return layout.world_size if ph.ranks_listed == "all" else layout.tp * layout.pp


def _check_ranks(ph: PhasePlan, name: str, layout: Layout) -> None:
    want = _listed(ph, layout)
    if len(ph.ranks) != want:
        which = "" if ph.ranks_listed == "all" else " in DP replica 0 (ranks_listed: first-replica)"
        raise InputError(f"{name}.ranks", f"{len(ph.ranks)} ranks for layout {layout} ({want} expected{which})")
    for i, r in enumerate(ph.ranks):
        where = f"{name}.ranks[{i}]"
        if r.rank != i:
            raise InputError(f"{where}.rank", f"is {r.rank}, expected {i} (ranks in order)")
        for field, got, want in zip(("dp_rank", "pp_rank", "tp_rank"), (r.dp_rank, r.pp_rank, r.tp_rank),
                                    layout.coords(i)):
            if got != want:
                raise InputError(f"{where}.{field}", f"is {got}, layout {layout} puts rank {i} at {want}")
        if tuple(r.layers) != tuple(ph.stage_layers[r.pp_rank]):
            raise InputError(f"{where}.layers", f"{list(r.layers)} differs from stage {r.pp_rank}'s "
                             f"{list(ph.stage_layers[r.pp_rank])}")


def _check_groups(ph: PhasePlan, name: str, layout: Layout) -> None:
    axis = {"tp": 2, "pp": 1, "dp": 0}  # index into coords() that varies inside a group of that kind
    size = {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp}
    for i, g in enumerate(ph.process_groups):
        where = f"{name}.process_groups[{i}]"
        if g.id != i:
            raise InputError(f"{where}.id", f"is {g.id}, expected {i} (ids number the groups in order)")
        if any(not 0 <= r < layout.world_size for r in g.ranks) or len(set(g.ranks)) != len(g.ranks):
            raise InputError(f"{where}.ranks", f"{g.ranks} must be distinct ranks of 0..{layout.world_size - 1}")
        coords = [layout.coords(r) for r in g.ranks]
        fixed = {tuple(c[k] for k in range(3) if k != axis[g.kind]) for c in coords}
        varying = sorted(c[axis[g.kind]] for c in coords)
        if len(fixed) != 1 or varying != list(range(size[g.kind])):
            raise InputError(f"{where}.ranks", f"{g.ranks} is not a {g.kind} group of layout {layout}")


def _stage_tensors(graph: ModelGraph, stages: int) -> list[dict[str, WeightSpec]]:
    out: list[dict[str, WeightSpec]] = [{} for _ in range(stages)]
    for _, d in graph.g.nodes(data=True):
        for w in d["op"].weights:
            out[d["stage"]].setdefault(w.name, w)
    return out


def _check_programs(ph: PhasePlan, name: str, layout: Layout, tensors: list[dict[str, WeightSpec]]) -> None:
    groups = {g.id: g for g in ph.process_groups}
    sends: Counter = Counter()
    recvs: Counter = Counter()
    for r in ph.ranks:
        where = f"{name}.ranks[{r.rank}]"
        used: set[str] = set()
        for j, ins in enumerate(r.program):
            at = f"{where}.program[{j}]"
            if ins.layer is not None and not r.layers[0] <= ins.layer < r.layers[1]:
                raise InputError(f"{at}.layer", f"layer {ins.layer} is outside the rank's layers "
                                 f"[{r.layers[0]}, {r.layers[1]})")
            for w in ins.weights:
                if w not in r.weight_shards:
                    raise InputError(f"{at}.weights", f"{w} is not in the rank's weight_shards")
                used.add(w)
            if ins.op in COLLECTIVE_OPS:
                if ins.group not in groups:
                    raise InputError(f"{at}.group", f"{ins.op} names group {ins.group}, which is not in "
                                     f"{name}.process_groups")
                if r.rank not in groups[ins.group].ranks:
                    raise InputError(f"{at}.group", f"group {ins.group} {groups[ins.group].ranks} does not "
                                     f"contain rank {r.rank}")
            elif ins.op in ("send", "recv"):
                peer = ins.peer
                if peer is None or not 0 <= peer < layout.world_size or peer == r.rank:
                    raise InputError(f"{at}.peer", f"{ins.op} needs another rank of 0..{layout.world_size - 1}, "
                                     f"got {peer}")
                pd, _, pt = layout.coords(peer)
                if (pd, pt) != (r.dp_rank, r.tp_rank):
                    raise InputError(f"{at}.peer", f"rank {peer} is not in rank {r.rank}'s pipeline "
                                     f"(same dp_rank and tp_rank)")
                (sends if ins.op == "send" else recvs)[(r.rank, peer) if ins.op == "send" else (peer, r.rank)] += 1
        want = {n: w for n, w in tensors[r.pp_rank].items() if holds(w, r.tp_rank, layout.tp)}
        for w in r.weight_shards:
            if w not in want:
                raise InputError(f"{where}.weight_shards[{w}]", f"not a tensor of stage {r.pp_rank}"
                                 if w not in tensors[r.pp_rank] else "an expert of another expert group")
            if w not in used:
                raise InputError(f"{where}.weight_shards[{w}]", "held but read by no instruction")
        missing = [w for w in want if w not in r.weight_shards]
        if missing:
            raise InputError(f"{where}.weight_shards", f"misses {missing[0]} (a tensor of stage {r.pp_rank})"
                             + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    for (src, dst) in sorted(set(sends) | set(recvs)):
        if sends[(src, dst)] != recvs[(src, dst)]:
            raise InputError(f"{name}.ranks[{src}].program", f"{sends[(src, dst)]} send(s) to rank {dst} but "
                             f"rank {dst} has {recvs[(src, dst)]} recv(s) from rank {src}")


def _check_coverage(ph: PhasePlan, name: str, layout: Layout, tensors: list[dict[str, WeightSpec]]) -> None:
    """Each sharded tensor's slices over a TP group tile it exactly once (replicated heads: equally often)."""
    for d in range(layout.dp if ph.ranks_listed == "all" else 1):
        for p in range(layout.pp):
            group = [ph.ranks[layout.rank(d, p, t)] for t in range(layout.tp)]
            for wname, spec in tensors[p].items():
                members = [m for m in group if holds(spec, m.tp_rank, layout.tp)]  # an expert: its group only
                slices: list[ShardSlice | None] = [m.weight_shards[wname] for m in members]
                if all(s is None for s in slices):
                    continue
                first = members[0].rank
                if any(s is None for s in slices):
                    raise InputError(f"{name}.ranks[{first}].weight_shards[{wname}]", "mixes whole-tensor "
                                     f"(null) and sliced entries across TP group {[m.rank for m in members]}")
                _check_tiling(spec, slices, f"{name}.ranks[{first}].weight_shards[{wname}]",
                              [m.rank for m in members])


def _check_tiling(spec: WeightSpec, slices: list, field: str, ranks: list[int]) -> None:
    dims = {s.dim for s in slices}
    if len(dims) != 1 or next(iter(dims)) >= len(spec.shape):
        raise InputError(field, f"TP group {ranks} slices dims {sorted(dims)} of a {len(spec.shape)}-D tensor")
    size = spec.shape[next(iter(dims))]
    held = Counter((s.start, s.stop) for s in slices)
    pos = 0
    for start, stop in sorted(held):
        if stop < start or start != pos:
            raise InputError(field, f"TP group {ranks} slices {sorted(held)} do not tile [0, {size}) exactly "
                             "once")
        pos = stop
    if pos != size:
        raise InputError(field, f"TP group {ranks} slices cover [0, {pos}) of a dimension of size {size}")
    if len(set(held.values())) != 1:
        raise InputError(field, f"TP group {ranks} holds the slices {dict(held)} unequally often")


def _check_phase(plan: ExecutionPlan, name: str, cfg: ModelConfig) -> None:
    from seesaw.ir.passes import lower  # local: only the checks need the passes

    ph = plan.phase(name)
    try:
        layout = ph.layout.layout
    except ValueError as err:
        raise InputError(f"{name}.layout.ep", str(err)) from None
    _check_stages(ph, name, cfg.num_hidden_layers)
    _check_ranks(ph, name, layout)
    _check_groups(ph, name, layout)
    try:
        graph = lower(cfg, layout, [tuple(s) for s in ph.stage_layers])
    except InputError as err:
        raise InputError(f"{name}.layout.{err.field}", err.problem) from None
    tensors = _stage_tensors(graph, layout.pp)
    _check_programs(ph, name, layout, tensors)
    _check_coverage(ph, name, layout, tensors)


def _check_summary(plan: ExecutionPlan) -> None:
    s, kv, sch, pred = plan.summary, plan.kv, plan.schedule, plan.prediction
    exact = [
        ("prefill", s.prefill, plan.prefill.layout), ("decode", s.decode, plan.decode.layout),
        ("host_kv_buffer_tokens", s.host_kv_buffer_tokens, kv.host_buffer_tokens_per_replica),
        ("gpu_kv_tokens", s.gpu_kv_tokens, kv.gpu_kv_tokens_per_replica),
        ("max_prefill_tokens", s.max_prefill_tokens, sch.max_prefill_tokens),
        ("decode_max_seqs", s.decode_max_seqs, sch.decode_max_seqs), ("static", s.static, sch.static),
        ("breakdown.transitions", s.breakdown.transitions, pred.transitions),
    ]
    close = [
        ("predicted_tokens_per_s", s.predicted_tokens_per_s, pred.tokens_per_s),
        ("predicted_output_tokens_per_s", s.predicted_output_tokens_per_s, pred.output_tokens_per_s),
        ("breakdown.prefill_s", s.breakdown.prefill_s, pred.prefill_s),
        ("breakdown.decode_s", s.breakdown.decode_s, pred.decode_s),
        ("breakdown.transition_s", s.breakdown.transition_s, pred.transition_s),
        ("breakdown.kv_swap_s", s.breakdown.kv_swap_s, pred.kv_swap_s),
        ("memory_per_gpu_gb", s.memory_per_gpu_gb, pred.memory.device_total_bytes / _GB),
    ]
    for field, got, want in exact:
        if got != want:
            got, want = (str(x) if isinstance(x, LayoutSpec) else repr(x.model_dump()) if hasattr(x, "model_dump")
                         else repr(x) for x in (got, want))
            raise InputError(f"summary.{field}", f"{got} disagrees with the plan's {want}")
    for field, got, want in close:
        if not _close(got, want):
            raise InputError(f"summary.{field}", f"{got!r} disagrees with the plan's {want!r}")
    bs = s.best_static
    if bs is None:
        if s.speedup_vs_best_static is not None:
            raise InputError("summary.speedup_vs_best_static", "given without a best_static plan")
    elif bs.predicted_tokens_per_s > 0:
        want = s.predicted_tokens_per_s / bs.predicted_tokens_per_s
        if s.speedup_vs_best_static is None or not _close(s.speedup_vs_best_static, want):
            raise InputError("summary.speedup_vs_best_static", f"{s.speedup_vs_best_static!r} disagrees with "
                             f"predicted_tokens_per_s / best_static.predicted_tokens_per_s = {want!r}")


def _check_schedule(plan: ExecutionPlan) -> None:
    """Batch caps the runtime can run (at least one sequence and one token per step) and switch thresholds
    the scheduler accepts: prefill->decode inside the host buffer (0 means the whole buffer, as the runtime
    reads it) and decode->prefill below it."""
    sch, buf = plan.schedule, plan.kv.host_buffer_tokens_per_replica
    if sch.decode_max_seqs < 1:
        raise InputError("schedule.decode_max_seqs", f"must be at least 1, got {sch.decode_max_seqs}")
    if sch.max_batched_tokens is not None and sch.max_batched_tokens < 1:
        raise InputError("schedule.max_batched_tokens", f"must be at least 1, got {sch.max_batched_tokens}")
    if sch.max_prefill_tokens < 1 and not (sch.static and sch.max_batched_tokens):
        raise InputError("schedule.max_prefill_tokens", f"must be at least 1, got {sch.max_prefill_tokens}")
    if buf > 0:
        if sch.prefill_to_decode_threshold_tokens > buf:
            raise InputError("schedule.prefill_to_decode_threshold_tokens",
                             f"{sch.prefill_to_decode_threshold_tokens} exceeds the host buffer ({buf} tokens)")
        switch = sch.prefill_to_decode_threshold_tokens or buf
        if sch.decode_to_prefill_threshold_tokens >= switch:
            raise InputError("schedule.decode_to_prefill_threshold_tokens",
                             f"{sch.decode_to_prefill_threshold_tokens} must be below the prefill->decode threshold "
                             f"({switch} tokens)")


def check_plan(plan: ExecutionPlan, cfg: ModelConfig | None = None) -> None:
    """Check everything a schema cannot: DP equal in both phases, ``dp*tp*pp`` = the cluster's GPUs,
    contiguous stages covering all layers, rank maps, process groups, each rank's shard map = its
    stage's tensors (per the IR), TP slices tiling each tensor exactly once, collective groups that
    exist and contain the rank, send/recv pairs, KV page count, static flag, and the summary.

    ``cfg``: when given, ``model.fingerprint`` must equal ``cfg.fingerprint()``; otherwise the config is
    rebuilt from the fingerprint. Raises :class:`InputError` naming the offending field (no source).
    """
    if cfg is not None and cfg.fingerprint() != plan.model.fingerprint:
        diff = sorted(k for k in set(cfg.fingerprint()) | set(plan.model.fingerprint)
                      if cfg.fingerprint().get(k) != plan.model.fingerprint.get(k))
        raise InputError("model.fingerprint", f"differs from model {cfg.name} in {', '.join(diff)}")
    cfg = cfg if cfg is not None else config_from_plan(plan)
    if plan.model.num_parameters != build_graph(cfg).num_parameters():
        raise InputError("model.num_parameters", f"{plan.model.num_parameters} differs from the model's "
                         f"{build_graph(cfg).num_parameters()}")
    if plan.prefill.layout.dp != plan.decode.layout.dp:
        raise InputError("decode.layout.dp", f"{plan.decode.layout.dp} differs from prefill's "
                         f"{plan.prefill.layout.dp} (DP must be the same in both phases)")
    n = cluster_num_gpus(plan.cluster)
    for name in ("prefill", "decode"):
        lay = plan.phase(name).layout
        if lay.dp * lay.tp * lay.pp != n:
            raise InputError(f"{name}.layout", f"dp*tp*pp = {lay.dp * lay.tp * lay.pp}, the cluster has {n} GPUs")
    for name in ("prefill", "decode"):
        _check_phase(plan, name, cfg)
    kv = plan.kv
    pages = -(-kv.gpu_kv_tokens_per_replica // kv.page_size_tokens)
    if kv.gpu_pages_per_rank != pages:
        raise InputError("kv.gpu_pages_per_rank", f"{kv.gpu_pages_per_rank}, expected ceil("
                         f"{kv.gpu_kv_tokens_per_replica} / {kv.page_size_tokens}) = {pages}")
    _check_schedule(plan)
    same = plan.prefill.layout == plan.decode.layout and plan.prefill.stage_layers == plan.decode.stage_layers
    if plan.schedule.static != same:
        raise InputError("schedule.static", f"{plan.schedule.static}, but prefill and decode use "
                         + ("the same layout and stages" if same else "different layouts or stages"))
    _check_summary(plan)

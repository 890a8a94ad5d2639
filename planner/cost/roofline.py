"""Per-rank time of one forward pass of IR ops: roofline compute/memory plus alpha-beta collectives.

Formulas: DESIGN.md section 4 (after the Seesaw paper's appendix). Each compute op costs
``max(flops / F_eff, bytes / B_eff)`` where ``F_eff = peak FLOP/s * matmul_efficiency`` and
``B_eff = peak memory bandwidth * memory_efficiency`` come from the hardware profile. Collectives use the
cluster's alpha-beta model (``Cluster.allreduce_s`` etc.).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from seesaw.ir.ops import Op, OpKind, PassShape
from seesaw.planner.hardware import Cluster

_COMM_KINDS = {OpKind.ALL_REDUCE, OpKind.ALL_GATHER, OpKind.SEND, OpKind.RECV}


def merge_parts(parts: Sequence[PassShape]) -> PassShape:
    """One shape with the summed tokens and sequences of ``parts`` (for ops that only see tokens)."""
    seqs = sum(p.num_seqs for p in parts)
    tokens = sum(p.num_seqs * p.query_tokens for p in parts)
    per_seq = tokens / seqs if seqs else 0.0
    return PassShape(num_seqs=seqs, query_tokens=per_seq, context_len=per_seq)


def compute_op_s(op: Op, parts: Sequence[PassShape], tp: int, cluster: Cluster) -> float:
    """Roofline time (s) of a compute op on one rank for a batch made of ``parts``.

    Attention is costed per part (a prefill chunk and decode sequences attend over different contexts);
    every other op sees the merged token count.
    """
    gpu = cluster.gpu
    dtype = gpu.dtype_bytes
    shapes = parts if op.kind == OpKind.ATTENTION else [merge_parts(parts)]
    total = 0.0
    for shape in shapes:
        if shape.num_seqs <= 0:
            continue
        flops = op.flops(shape, tp)
        nbytes = op.device_bytes(shape, tp, dtype)
        total += max(flops / gpu.achievable_flops, nbytes / gpu.achievable_memory_bytes_per_s)
    return total


def comm_op_s(op: Op, parts: Sequence[PassShape], tp: int, cluster: Cluster) -> float:
    """Time (s) of an all-reduce / all-gather inside a TP group (TP groups never span nodes)."""
    if tp == 1:
        return 0.0
    nbytes = op.comm_bytes(merge_parts(parts), cluster.gpu.dtype_bytes)
    if op.kind == OpKind.ALL_REDUCE:
        return cluster.allreduce_s(nbytes, tp, False)
    if op.kind == OpKind.ALL_GATHER:
        return cluster.allgather_s(nbytes, tp, False)
    return 0.0  # send/recv are costed per stage boundary, see stage_send_s


def ops_time_s(ops: Iterable[Op], parts: Sequence[PassShape], tp: int, cluster: Cluster) -> float:
    """Sum of op times (s) for ``ops`` executed in order on one rank."""
    total = 0.0
    for op in ops:
        if op.kind in _COMM_KINDS:
            total += comm_op_s(op, parts, tp, cluster)
        else:
            total += compute_op_s(op, parts, tp, cluster)
    return total


def hidden_send_s(parts: Sequence[PassShape], hidden_size: int, cluster: Cluster, spans_nodes: bool) -> float:
    """Send/recv time (s) of the hidden states ``[tokens, hidden]`` across one PP stage boundary."""
    shape = merge_parts(parts)
    nbytes = shape.num_seqs * shape.query_tokens * hidden_size * cluster.gpu.dtype_bytes
    return cluster.send_recv_s(nbytes, spans_nodes)

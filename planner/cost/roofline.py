"""Per-rank time of one forward pass of IR ops: roofline compute/memory plus alpha-beta collectives.

Formulas: DESIGN.md section 4 (after the Seesaw paper's appendix). Each compute op costs
``max(c, m) + (1 - overlap) * min(c, m)`` with ``c = flops / F_eff`` and ``m = bytes / B_eff``, where
``F_eff = peak FLOP/s * matmul_efficiency`` and ``B_eff = peak memory bandwidth * memory_efficiency`` come
from the hardware profile; ``overlap = compute_memory_overlap`` is 1 (the plain roofline ``max``) unless a
calibration measured less (a single CPU thread does not overlap streaming and arithmetic). GEMMs (linear,
lm head, router, and each expert of a mixture at its mean rows) of ``r`` rows run at ``F_eff * r / (r + n_half)`` (Hockney and Jesshope's half-performance length,
``matmul_half_rows``; the lm head at ``lm_head_efficiency`` of both rates; FP8 x FP8 GEMMs of FP8 checkpoints
from ``fp8_tflops`` where the GPU has FP8 tensor cores), and GEMMs of two or more rows
move ``1 + matmul_pack_ratio`` times their bytes (a CPU BLAS packs the weight panels; a one-row GEMV streams them once); attention at ``F_eff * attention_efficiency`` and ``B_eff *
attention_memory_efficiency``. Fixed overheads measured by ``seesaw-calibrate`` add ``op_overhead_us`` per compute
op, ``elementwise_overhead_us`` more per elementwise op (every compute op but GEMMs and attention),
``attention_overhead_us`` more per attention op,
``attention_seq_overhead_us`` per sequence per attention op, and ``step_overhead_us`` per micro-batch
(see :func:`step_overhead_s`). Collectives use the cluster's alpha-beta model (``Cluster.allreduce_s`` etc.).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from seesaw.ir.ops import Op, OpKind, PassShape
from seesaw.planner.cost.moe_balance import ep_imbalance
from seesaw.planner.hardware import Cluster, GPUSpec

_COMM_KINDS = {OpKind.ALL_REDUCE, OpKind.ALL_GATHER, OpKind.SEND, OpKind.RECV}


def merge_parts(parts: Sequence[PassShape]) -> PassShape:
    """One shape with the summed tokens and sequences of ``parts`` (for ops that only see tokens)."""
    seqs = sum(p.num_seqs for p in parts)
    tokens = sum(p.num_seqs * p.query_tokens for p in parts)
    per_seq = tokens / seqs if seqs else 0.0
    return PassShape(num_seqs=seqs, query_tokens=per_seq, context_len=per_seq)


GEMM_KINDS = {OpKind.LINEAR, OpKind.LM_HEAD, OpKind.ROUTER, OpKind.MOE_EXPERTS}


def gemm_rows(op: Op, shape: PassShape) -> float | None:
    """Rows of the op's GEMMs (None for an op that is no GEMM): its tokens, or for a mixture of experts the mean
    rows of one touched expert (:meth:`~seesaw.ir.ops.Op.expert_rows`: a decode step's experts see few rows)."""
    if op.kind is OpKind.MOE_EXPERTS:
        return op.expert_rows(shape)
    return op.tokens(shape) if op.kind in GEMM_KINDS else None


def attention_rates(gpu: GPUSpec) -> tuple[float, float, float]:
    """``(FLOP/s, bytes/s, overlap)`` an attention kernel runs at: ``F_eff * attention_efficiency``, ``B_eff *
    attention_memory_efficiency`` and ``compute_memory_overlap`` (what :func:`kernel_time_s` uses for
    ``attention=True``; the simulator takes them once per layout)."""
    return (gpu.achievable_flops * gpu.attention_efficiency,
            gpu.achievable_memory_bytes_per_s * gpu.attention_memory_efficiency, gpu.compute_memory_overlap)


def roofline_s(compute_s: float, memory_s: float, overlap: float) -> float:
    """``max(c, m) + (1 - overlap) * min(c, m)``: the time of a kernel whose compute alone takes ``c`` and
    memory traffic alone ``m`` seconds, ``overlap`` of the shorter hidden under the longer."""
    return max(compute_s, memory_s) + (1.0 - overlap) * min(compute_s, memory_s)


def kernel_time_s(flops: float, nbytes: float, gpu: GPUSpec, gemm_rows: float | None = None,
                  attention: bool = False, lm_head: bool = False, fp8: bool = False, moe: bool = False,
                  moe_ep: bool = False) -> float:
    """Time (s) of one kernel of ``flops`` FLOPs moving ``nbytes`` bytes, without fixed overheads.

    ``max(c, m) + (1 - gpu.compute_memory_overlap) * min(c, m)``, ``c = flops / F``, ``m = nbytes / B_eff``;
    for a GEMM of ``gemm_rows`` rows ``F = F_eff * rows / (rows + matmul_half_rows)``, for attention
    ``F = F_eff * attention_efficiency`` and ``B_eff * attention_memory_efficiency``, else ``F = F_eff``; a GEMM of more
    than one row moves ``nbytes * (1 + matmul_pack_ratio)`` (weight packing, GotoBLAS-style); the lm head's GEMM
    (``lm_head``) runs both rates at ``lm_head_efficiency``; a fused mixture-of-experts kernel (``moe``) computes at
    ``moe_efficiency`` of the GEMM rate, an expert-parallel one (``moe_ep``) ``moe_ep_efficiency`` of that; an FP8 x
    FP8 GEMM (``fp8``) starts from
    ``gpu.achievable_fp8_flops`` (the bf16 rate on GPUs without FP8 tensor cores). The calibration fit
    (:mod:`seesaw.planner.calibration.fit`) uses this very function.
    """
    if attention:
        rate, bandwidth, _ = attention_rates(gpu)
    else:
        rate = gpu.achievable_fp8_flops if fp8 else gpu.achievable_flops
        bandwidth = gpu.achievable_memory_bytes_per_s
    if gemm_rows is not None and gpu.matmul_half_rows > 0:
        rate *= gemm_rows / (gemm_rows + gpu.matmul_half_rows)
    if lm_head:
        rate *= gpu.lm_head_efficiency
        bandwidth *= gpu.lm_head_efficiency
    if moe:
        rate *= gpu.moe_efficiency * (gpu.moe_ep_efficiency if moe_ep else 1.0)
    c = flops / rate if flops else 0.0
    m = nbytes / bandwidth
    if gemm_rows is not None and gemm_rows > 1:
        m *= 1.0 + gpu.matmul_pack_ratio
    return roofline_s(c, m, gpu.compute_memory_overlap)


def _ep(op: Op) -> int:
    """The expert groups of a ``moe_experts`` op (1 without expert parallelism, and for every other op)."""
    return op.dims.get("ep", 1) if op.kind == OpKind.MOE_EXPERTS else 1


def _busiest_group(op: Op) -> float:
    """The busiest expert group's load over the mean for an expert-parallel ``moe_experts`` op, else 1."""
    return ep_imbalance(op.dims["experts"], _ep(op)) if _ep(op) > 1 else 1.0


def compute_op_s(op: Op, parts: Sequence[PassShape], tp: int, cluster: Cluster) -> float:
    """Time (s) of a compute op on one rank for a batch made of ``parts``.

    Attention is costed per part (a prefill chunk and decode sequences attend over different contexts)
    plus ``attention_seq_overhead_us`` per sequence; every other op sees the merged token count. Every op
    adds ``op_overhead_us`` once, elementwise ops (neither GEMM nor attention) ``elementwise_overhead_us``
    more, attention ``attention_overhead_us`` more, a mixture of experts ``moe_overhead_us`` more (an
    expert-parallel one ``moe_ep_overhead_us`` more again). An expert-parallel mixture of experts computes the
    busiest expert group's pairs (:func:`~seesaw.planner.cost.moe_balance.ep_imbalance` times the balanced share;
    its bytes stay the balanced ones: a decode step reads the experts it touches whatever their load).
    """
    gpu = cluster.gpu
    dtype = gpu.dtype_bytes
    attention = op.kind == OpKind.ATTENTION
    shapes = parts if attention else [merge_parts(parts)]
    total = 0.0
    for shape in shapes:
        if shape.num_seqs <= 0:
            continue
        flops = op.flops(shape, tp) * _busiest_group(op)
        nbytes = op.device_bytes(shape, tp, dtype)
        rows = gemm_rows(op, shape)
        total += kernel_time_s(flops, nbytes, gpu, rows, attention, op.kind == OpKind.LM_HEAD,
                               op.dims.get("gemm_dtype") == "fp8", op.kind == OpKind.MOE_EXPERTS, _ep(op) > 1)
        if attention:
            total += gpu.attention_seq_overhead_us * 1e-6 * shape.num_seqs
    if not total:
        return 0.0
    fixed_us = gpu.op_overhead_us + (gpu.attention_overhead_us if attention else
                                     gpu.moe_overhead_us + gpu.moe_ep_overhead_us * (_ep(op) > 1)
                                     if op.kind == OpKind.MOE_EXPERTS else
                                     0.0 if op.kind in GEMM_KINDS else gpu.elementwise_overhead_us)
    return total + fixed_us * 1e-6


def step_overhead_s(cluster: Cluster) -> float:
    """Fixed time (s) every rank spends per micro-batch outside its ops (batch set-up, sampling, the
    scheduler's round trip), ``step_overhead_us`` of the profile."""
    return cluster.gpu.step_overhead_us * 1e-6


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

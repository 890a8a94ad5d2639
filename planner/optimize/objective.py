"""The objective: predicted time (integer ns) to serve one DP replica's share of the workload.

Seesaw (DESIGN.md section 8), per replica with prompt tokens ``P``:

    T = T_prefill + T_decode + C * reload(decode) + (C - 1) * reload(prefill)
        + max(0, swap_out - T_prefill) + max(0, swap_in - T_decode)

with ``C = ceil(P / (theta_p - theta_d))`` prefill/decode cycles, ``theta_p + B_p <= H`` (the host
buffer never overflows during a prefill batch) and ``H`` bounded by host memory. The GPU KV cache stays
resident in the decode layout across phases, so during prefill each GPU holds the prefill layout's
weights and workspace *plus* its decode-layout KV pages. The static plan (vLLM) is one layout with
chunked prefill and no host buffer. This module is the reference the CP-SAT model must reproduce
exactly; ``--search exhaustive`` enumerates it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from seesaw.planner.cost.model import CostModel
from seesaw.planner.optimize.terms import PhaseTerms, host_buffer_max_tokens, stage_of


@dataclass(frozen=True)
class SeesawEval:
    objective_ns: int
    prefill_ns: int
    decode_ns: int
    transition_ns: int
    swap_exposed_ns: int
    cycles: int
    transitions: int
    host_buffer_tokens: int  # smallest buffer achieving ``cycles``
    prefill_to_decode_threshold_tokens: int
    peak_busy_bytes: int  # fullest GPU: weights + workspace (KV excluded) in its worse phase
    peak_kv_bytes: int


@dataclass(frozen=True)
class StaticEval:
    objective_ns: int
    peak_busy_bytes: int
    peak_kv_bytes: int


def positions_fit(cost: CostModel, pre: PhaseTerms, dec: PhaseTerms,
                  pcounts: tuple[int, ...], dcounts: tuple[int, ...]) -> tuple[bool, int, int]:
    """Whether every GPU of a replica fits both phases; also the peak busy and KV bytes."""
    cap = cost.device_capacity_bytes
    peak_busy = peak_kv = 0
    for g in range(pre.layout.replica_size):
        sp, sd = stage_of(g, pre.layout), stage_of(g, dec.layout)
        kv = dcounts[sd] * dec.kv_layer_bytes
        busy = max(pre.busy_bytes(sp, pcounts[sp]), dec.busy_bytes(sd, dcounts[sd]))
        if busy + kv > cap:
            return False, 0, 0
        if busy + kv > peak_busy + peak_kv:
            peak_busy, peak_kv = busy, kv
    return True, peak_busy, peak_kv


def evaluate_seesaw(cost: CostModel, pre: PhaseTerms, dec: PhaseTerms,
                    pcounts: tuple[int, ...], dcounts: tuple[int, ...]) -> SeesawEval | None:
    """Exact objective of one Seesaw choice, or None when it does not fit in memory."""
    same = pre.layout == dec.layout
    if same and pcounts != dcounts:
        return None  # one layout keeps one partition: nothing to re-shard
    ok, busy, kv = positions_fit(cost, pre, dec, pcounts, dcounts)
    if not ok:
        return None
    work = cost.replica_work(pre.layout.dp)
    h_max = host_buffer_max_tokens(cost, pre.layout.dp, resharding=not same)
    drain_max = h_max - pre.batch  # theta_p - theta_d at most
    if drain_max < 1:
        return None
    cycles = math.ceil(work.prompt_tokens / drain_max)
    t_pre = pre.time_ns(pcounts)
    t_dec = dec.time_ns(dcounts)
    r_pre = 0 if same else pre.reload_ns(pcounts)
    r_dec = 0 if same else dec.reload_ns(dcounts)
    t_trans = cycles * r_dec + (cycles - 1) * r_pre
    swap = max(0, pre.swap_ns(pcounts) - t_pre) + max(0, dec.swap_ns(dcounts) - t_dec)
    theta_p = math.ceil(work.prompt_tokens / cycles)
    return SeesawEval(
        objective_ns=t_pre + t_dec + t_trans + swap,
        prefill_ns=t_pre, decode_ns=t_dec, transition_ns=t_trans, swap_exposed_ns=swap,
        cycles=cycles, transitions=0 if same else 2 * cycles - 1,
        host_buffer_tokens=theta_p + pre.batch,
        prefill_to_decode_threshold_tokens=theta_p,
        peak_busy_bytes=busy, peak_kv_bytes=kv,
    )


def evaluate_static(cost: CostModel, terms: PhaseTerms, counts: tuple[int, ...]) -> StaticEval | None:
    """Exact objective of one static (chunked-prefill) choice, or None when it does not fit."""
    cap = cost.device_capacity_bytes
    peak = (0, 0)
    for s, n in enumerate(counts):
        busy, kv = terms.busy_bytes(s, n), n * terms.kv_layer_bytes
        if busy + kv > cap:
            return None
        peak = max(peak, (busy, kv), key=sum)
    return StaticEval(terms.time_ns(counts), *peak)

"""Request-level simulation of a vLLM-style engine (the static baseline): one layout for both phases.

The scheduler follows vLLM's V1 engine (``vllm/v1/core/sched/scheduler.py``; vLLM docs, "Optimization and
Tuning"):

- every step has a budget of ``max_num_batched_tokens`` tokens; running requests are served first (each
  decoding request one token, a partly prefilled one the next chunk of its prompt), then waiting
  requests are admitted in arrival order while fewer than ``max_num_seqs`` run and budget is left, the
  last one's prompt chunked to the budget (chunked prefill);
- the KV cache is paged in blocks of ``block_size`` tokens, allocated as tokens are computed, in the
  memory the engine may use (``gpu_memory_utilization`` of the device, less the weights, the activation
  peak of a full step and the non-torch reserve; :func:`engine_kv_blocks`); a decoding request that cannot
  get a block preempts the most recently admitted request, and a prompt chunk that finds none while
  nothing is in flight (so waiting would free none) the most recently admitted prefilling one
  (recompute: its KV is dropped and it re-enters the queue with its prompt and the tokens generated so
  far as its new prompt); nothing is admitted in a step that preempted;
- under PP, ``pp`` batches are in flight (vLLM's batch queue); requests of an in-flight batch wait for its
  result, so the decoding requests form ``pp`` cohorts that take turns;
- each step pays the engine's host time (scheduling, input preparation, sampling bookkeeping) on top of
  the GPU time, ``step_overhead_us + seq_overhead_us * requests`` of the engine's
  :class:`~seesaw.planner.hardware.engines.EngineSpec`.

Decoding requests are kept in aggregate per cohort (context sum, finishing steps, and how many need a new
block at each step), so a step costs ``O(1)`` plus the requests that start, finish, chunk or are
preempted.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware.engines import EngineSpec
from seesaw.planner.simulate.pipeline import Pipeline
from seesaw.planner.simulate.result import SimRun
from seesaw.planner.simulate.replicas import counted_only, replica_shares, replicas_to_simulate
from seesaw.planner.simulate.step_time import AttentionLoad, step_times


@dataclass(frozen=True)
class EngineKnobs:
    """The engine settings a vLLM user tunes (vLLM's own names; defaults: vLLM V1 on GPUs under 70 GiB)."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    enable_chunked_prefill: bool = True

    @classmethod
    def defaults(cls, engine: EngineSpec, gpu, max_model_len: int = 0) -> EngineKnobs:
        """What ``engine`` picks on ``gpu`` when the user sets nothing (without chunked prefill a step must
        hold the longest prompt: the budget is at least ``max_model_len``, as vLLM V0 requires)."""
        seqs, tokens = engine.default_knobs(gpu)
        if not engine.chunked_prefill:
            tokens = max(tokens, max_model_len)
        return cls(seqs, tokens, engine.gpu_memory_utilization, engine.block_size, engine.chunked_prefill)


@dataclass(frozen=True)
class EnginePlan:
    """A static plan as the engine runs it: one layout, PP stage sizes, the knobs, KV blocks per replica."""

    layout: Layout
    counts: tuple[int, ...]
    knobs: EngineKnobs
    kv_blocks: int

    def holds(self, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request's prompt and output fit the replica's KV blocks at once (one that does not would
        preempt itself for ever, so the simulation refuses it)."""
        return -(-(prompt_tokens + output_tokens) // self.knobs.block_size) <= self.kv_blocks


def engine_kv_blocks(cost: CostModel, layout: Layout, counts: tuple[int, ...], knobs: EngineKnobs,
                     fraction_of: str = "total") -> int:
    """KV blocks one replica gets (every stage holds the same block count; the fullest stage decides).

    Per GPU of stage ``s``: ``gpu_memory_utilization * device memory`` less its weights, the activation
    peak of a step of ``max_num_batched_tokens`` tokens (and the last stage's fp32 logits of
    ``max_num_seqs`` sequences) and the non-torch reserve (CUDA context, NCCL buffers), divided by a block's
    KV bytes on that stage (vLLM's profile run: ``gpu_worker.determine_available_memory``). With
    ``fraction_of="free"`` the fraction applies to the memory left after the reserve, the weights and the
    activations instead (TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction``). Negative when the weights alone
    do not fit.
    """
    mem = cost.memory_terms(layout.tp, layout.ep)
    gpu = cost.cluster.gpu
    weights = cost.stage_weight_bytes(layout, counts)
    acts = knobs.max_num_batched_tokens * mem.act_bytes_per_token
    blocks = None
    for s, n in enumerate(counts):
        used = weights[s] + acts + (knobs.max_num_seqs * mem.logits_bytes_per_seq if s == len(counts) - 1 else 0)
        if fraction_of == "free":
            free = knobs.gpu_memory_utilization * (gpu.memory_bytes - gpu.runtime_reserve_bytes - used)
        else:
            free = knobs.gpu_memory_utilization * gpu.memory_bytes - gpu.runtime_reserve_bytes - used
        per_block = knobs.block_size * n * mem.kv_bytes_per_token_layer
        b = int(free // per_block)
        blocks = b if blocks is None else min(blocks, b)
    return blocks if blocks is not None else 0


class _Req:
    __slots__ = ("index", "prompt", "out_total", "out_done", "target", "computed", "blocks", "cohort", "start",
                 "key", "stamp", "inflight", "alive", "state")

    def __init__(self, index: int, prompt: int, out_total: int) -> None:
        self.index, self.prompt, self.out_total = index, prompt, out_total
        self.out_done = 0
        self.target = prompt  # tokens its (re)prefill computes: prompt + outputs before a preemption
        self.computed = 0  # prefill tokens computed (or scheduled) so far
        self.blocks = 0  # KV blocks held while prefilling (decoding: see _Cohorts.blocks_held)
        self.cohort = -1
        self.start = 0  # cohort action index of its first decode step
        self.key = 0
        self.stamp = 0  # admission order
        self.inflight = False
        self.alive = 0  # bumped on preemption, so stale heap entries are skipped
        self.state = "waiting"  # waiting | prefilling | decoding | finished


class _Cohorts:
    """Decoding requests of each cohort in aggregate (see the module docstring).

    A member of cohort ``g`` that joined at action ``start`` after prefilling ``target`` tokens writes the KV
    of position ``target + a - start`` at the cohort's action ``a`` and attends over one more token; it
    needs a new block at that action when the position is a multiple of the block size.
    """

    def __init__(self, n: int, block: int, reserve: bool = False) -> None:
        self.block = block
        self.reserve = reserve  # blocks were reserved at admission: decode never allocates
        self.issued = [0] * n
        self.members = [0] * n
        self.base = [0] * n  # sum of (target + 1 - start): context sum at action a = base + members * a
        self.need = [[0] * block for _ in range(n)]  # members needing a new block at action a: need[a % block]
        self.finish: list[list] = [[] for _ in range(n)]  # heap (last action, stamp, alive, request)

    def join(self, r: _Req, g: int) -> None:
        r.cohort, r.start, r.state = g, self.issued[g], "decoding"
        r.key = (r.start - r.target) % self.block
        self.members[g] += 1
        self.base[g] += r.target + 1 - r.start
        if not self.reserve:
            self.need[g][r.key] += 1
        heapq.heappush(self.finish[g], (r.start + r.out_total - r.out_done - 1, r.stamp, r.alive, r))

    def leave(self, r: _Req) -> None:
        g = r.cohort
        self.members[g] -= 1
        self.base[g] -= r.target + 1 - r.start
        if not self.reserve:
            self.need[g][r.key] -= 1
        r.cohort = -1

    def blocks_held(self, r: _Req, next_action: int) -> int:
        """Blocks a member holds before its cohort's action ``next_action`` runs."""
        if self.reserve:
            return r.blocks
        return -(-(r.target + next_action - r.start) // self.block)

    def done_at(self, g: int, action: int) -> list[_Req]:
        """Members whose last output token the cohort's action ``action`` produced."""
        heap, out = self.finish[g], []
        while heap and heap[0][0] <= action:
            _, _, alive, r = heapq.heappop(heap)
            if alive == r.alive and r.state == "decoding" and r.cohort == g:
                out.append(r)
        return out


def simulate_engine_replica(cost: CostModel, plan: EnginePlan, engine: EngineSpec, prompt_lens: list[int],
                            output_lens: list[int], stop_after_s: float | None = None) -> SimRun:
    """Simulate one replica of the engine serving these requests (all queued at time 0, in this order);
    ``stop_after_s`` as :func:`~seesaw.planner.simulate.runtime_sim.simulate_replica`.

    Raises RuntimeError if the engine stalls (a request that fits alone can never be admitted: a bug).
    """
    knobs, block = plan.knobs, plan.knobs.block_size
    pp = plan.layout.pp
    st = step_times(cost, plan.layout, plan.counts)
    pipe = Pipeline(pp)
    reserve = engine.kv_admission == "reserve"
    co = _Cohorts(pp, block, reserve)
    free = plan.kv_blocks
    waiting: deque[_Req] = deque()
    run = SimRun(requests=len(prompt_lens))
    for i, (p, o) in enumerate(zip(prompt_lens, output_lens)):
        if not plan.holds(p, o):
            run.refused += 1  # can never hold prompt and output at once: it would preempt itself for ever
        else:
            waiting.append(_Req(i, p, o))
    served = list(waiting)
    prefilling: list[_Req] = []  # admitted, prompt not fully computed, in admission order
    order: list[_Req] = []  # admitted requests by admission (finished ones removed lazily), for preemption
    running = 0
    stamp = 0
    now = 0.0
    inflight: deque = deque()  # (end, cohort, action index, [(request, chunk)])
    busy = [False] * pp

    def blocks_for(tokens: int) -> int:
        return -(-tokens // block)

    def requeue(r: _Req) -> None:
        """Send a preempted request (its blocks already given back) to the front of the waiting queue, to
        recompute its prompt and the tokens it has produced."""
        nonlocal running
        r.blocks = r.computed = 0
        r.target = r.prompt + r.out_done
        r.alive += 1
        r.state = "waiting"
        running -= 1
        waiting.appendleft(r)
        run.preemptions += 1

    def preempt_one(g: int) -> bool:
        """Preempt the most recently admitted request that is not in flight (decoding in cohort ``g`` or
        prefilling; vLLM's ``running.pop()``); False when there is none."""
        nonlocal free
        k = len(order) - 1
        while k >= 0:
            r = order[k]
            if r.state == "finished" or r.state == "waiting":
                del order[k]
            elif not r.inflight and (r.state == "prefilling" or r.cohort == g):
                del order[k]
                if r.state == "decoding":
                    free += co.blocks_held(r, co.issued[g])
                    co.leave(r)
                else:
                    free += r.blocks
                    prefilling.remove(r)
                requeue(r)
                return True
            k -= 1
        return False

    def admit(budget: int, whole: bool) -> tuple[list[tuple[_Req, int]], int]:
        """Waiting requests admitted in arrival order while the budget, ``max_num_seqs`` and KV allow;
        with ``whole`` only whole prompts (no chunking), else the last one's prompt is cut to the budget."""
        nonlocal free, running, stamp
        chunks: list[tuple[_Req, int]] = []
        while waiting and budget > 0 and running < knobs.max_num_seqs:
            r = waiting[0]
            if whole and r.target > budget and chunks:
                break
            c = r.target if whole else min(r.target, budget)
            extra = blocks_for(r.target + r.out_total - r.out_done - 1 if reserve else c)
            if extra > free:
                break
            waiting.popleft()
            free -= extra
            r.blocks = extra
            stamp += 1
            r.stamp, r.state = stamp, "prefilling"
            running += 1
            prefilling.append(r)
            order.append(r)
            chunks.append((r, c))
            budget -= c
        return chunks, budget

    def preempt_prefilling() -> bool:
        """Preempt the most recently admitted prefilling request not in flight (a chunk that finds no block
        frees one, as vLLM preempts from the end of its running list); False when there is none."""
        nonlocal free
        for r in reversed(prefilling):
            if not r.inflight:
                prefilling.remove(r)
                order.remove(r)
                free += r.blocks
                requeue(r)
                return True
        return False

    def schedule(g: int) -> bool:
        """Form cohort ``g``'s next batch and put it in flight; False when there is nothing to run."""
        nonlocal free
        a = co.issued[g]
        if not knobs.enable_chunked_prefill:  # prefill first: a step of whole prompts while any is admitted
            chunks, _ = admit(knobs.max_num_batched_tokens, whole=True)
            if chunks:
                launch(g, a, 0, 0, chunks, decodes=False)
                return True
        preempted = False
        while free < co.need[g][a % block] and preempt_one(g):
            preempted = True
        need = co.need[g][a % block]
        if free < need:
            raise RuntimeError("engine simulation stalled: decode cannot get KV blocks")
        free -= need
        n_dec = co.members[g]
        ctx = co.base[g] + n_dec * a
        budget = knobs.max_num_batched_tokens - n_dec
        chunks: list[tuple[_Req, int]] = []
        for r in list(prefilling) if knobs.enable_chunked_prefill else ():
            if budget <= 0:
                break
            if r.inflight or r.state != "prefilling":
                continue
            c = min(r.target - r.computed, budget)
            extra = 0 if reserve else blocks_for(r.computed + c) - r.blocks
            # with nothing in flight no block will come free by waiting: make room (else wait for them)
            while extra > free and not inflight and preempt_prefilling():
                preempted = True
            if r.state != "prefilling" or extra > free:
                break
            free -= extra
            r.blocks += extra
            chunks.append((r, c))
            budget -= c
        if not preempted and knobs.enable_chunked_prefill:
            chunks += admit(budget, whole=False)[0]
        if not n_dec and not chunks:
            free += need
            return False
        launch(g, a, n_dec, ctx, chunks, decodes=True)
        return True

    def launch(g: int, a: int, n_dec: int, ctx: int, chunks: list[tuple[_Req, int]], decodes: bool) -> None:
        """Put the batch in flight: ``n_dec`` decoding requests of cohort ``g`` (its action ``a``) whose
        contexts sum to ``ctx``, and prefill ``chunks``; a prefill-only step (``decodes`` False) leaves the
        cohort's decode actions where they are."""
        pairs = kv = 0.0
        for r, c in chunks:
            r.inflight = True
            load = AttentionLoad.chunk(c, r.computed + c)
            pairs += load.pairs
            kv += load.kv_tokens
            r.computed += c
        n_chunk_tokens = sum(c for _, c in chunks)
        parts = [AttentionLoad.decode(n_dec, ctx)]
        if chunks:
            parts.append(AttentionLoad(len(chunks), n_chunk_tokens, pairs, kv))
        rows = n_dec + len(chunks)
        times = st.stage_times(n_dec + n_chunk_tokens, rows, parts)
        times[0] += engine.host_s(rows)
        if decodes:
            co.issued[g] += 1
        run.decode_steps += 1 if n_dec else 0
        run.prefill_batches += 1 if chunks else 0
        inflight.append((pipe.run(now, times), g, a if decodes else -1, chunks))
        busy[g] = True

    while True:
        for g in range(pp):
            if not busy[g]:
                schedule(g)
        if not inflight:
            if waiting or running:
                raise RuntimeError("engine simulation stalled: nothing can be scheduled")
            break
        end, g, a, chunks = inflight.popleft()
        busy[g] = False
        now = max(now, end)
        if stop_after_s is not None and now > stop_after_s:
            run.stopped = True
            run.wall_s = run.decode_s = now
            return run
        for r in co.done_at(g, a) if a >= 0 else ():
            free += co.blocks_held(r, a + 1)
            co.leave(r)
            r.state = "finished"
            running -= 1
        for r, c in chunks:
            r.inflight = False
            if r.computed < r.target:
                continue
            prefilling.remove(r)
            r.out_done += 1
            if r.out_done >= r.out_total:
                free += r.blocks
                r.state = "finished"
                running -= 1
            else:
                co.join(r, g)
    if free != plan.kv_blocks:
        raise RuntimeError(f"engine simulation leaked KV blocks: {plan.kv_blocks - free} still held at the end")
    run.wall_s = run.decode_s = now
    run.prompt_tokens = sum(r.prompt for r in served)
    run.output_tokens = sum(r.out_total for r in served)
    return run


def simulate_engine(cost: CostModel, plan: EnginePlan, engine: EngineSpec, stop_after_s: float | None = None,
                    sample: bool = True) -> SimRun:
    """Simulate the DP replicas of the engine on their shares of ``cost.workload`` (round robin); wall time is
    the slowest replica's. ``sample``: as :func:`~seesaw.planner.simulate.runtime_sim.simulate_runtime`.
    ``stop_after_s``: as :func:`simulate_engine_replica`."""
    run = SimRun()
    w = cost.workload
    shares = replica_shares(w.prompt_lens, w.output_lens, plan.layout.dp)
    chosen = replicas_to_simulate(shares, sample)
    for r in chosen:
        run.add_replica(simulate_engine_replica(cost, plan, engine, *shares[r], stop_after_s))
        if run.stopped:
            return run
    counted_only(run, shares, chosen, plan.holds)
    return run

"""Request-level simulation of this project's runtime: the shared replica scheduler driven by modelled time.

Each DP replica runs :class:`~seesaw.schedule.replica.ReplicaScheduler` exactly as the runtime's engine
drives it (issue actions until it answers "wait", then complete the oldest in-flight one, first in first
out), so its decisions are the runtime's decisions on the same requests; only the clock differs:

- a prefill or decode micro-batch goes through the phase's PP stages (:class:`Pipeline`) with the stage
  times of :class:`StepTimes` for its exact batch; prefill of a plan with a host buffer also writes each
  layer's KV to host memory (the worker does it inside the forward pass: per-layer time on every stage),
  and a decode step's ranks first copy the KV the step swaps in into their own pages;
- a transition holds the replica while every rank reloads its shard of the target layout (the slowest
  stage's weights over the host link);
- outputs have the trace's lengths (EOS ignored, as benchmark runs do).

Time is charged to phases as the engine charges it (each returned action: the time since the replica's
previous completion, or since it became busy), so one replica's phase breakdown is comparable with the
same replica's in a run's metrics.
Decode costs ``O(1)`` per step plus the sequences that join or finish: each decode group's context sum and
finishing steps are kept in aggregate.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.simulate.pipeline import Pipeline
from seesaw.planner.simulate.result import SimRun
from seesaw.planner.simulate.replicas import counted_only, replica_shares, replicas_to_simulate
from seesaw.planner.simulate.step_time import AttentionLoad, step_times
from seesaw.schedule import PageAllocator, Policy, ReplicaScheduler, Sequence


@dataclass(frozen=True)
class RuntimePlan:
    """What the runtime executes, per DP replica: both phases' layouts and PP stage sizes, the KV sizes and
    the schedule (the fields of a plan file's ``kv`` and ``schedule``)."""

    prefill: Layout
    prefill_counts: tuple[int, ...]
    decode: Layout
    decode_counts: tuple[int, ...]
    gpu_kv_tokens: int
    host_buffer_tokens: int
    page_size_tokens: int
    max_prefill_tokens: int
    decode_max_seqs: int
    prefill_to_decode_threshold_tokens: int
    decode_to_prefill_threshold_tokens: int

    @classmethod
    def from_plan_file(cls, plan: dict, gpu_kv_tokens: int | None = None,
                       host_buffer_tokens: int | None = None) -> RuntimePlan:
        """The runtime plan of an execution plan given as its JSON mapping (``plan.json``; the planner
        does not import codegen's model), with the runtime's optional KV size overrides."""
        def phase(name: str) -> tuple[Layout, tuple[int, ...]]:
            lay = plan[name]["layout"]
            return (Layout(lay["dp"], lay["tp"], lay["pp"], lay.get("ep", 1)),
                    tuple(int(b) - int(a) for a, b in plan[name]["stage_layers"]))

        kv, sched = plan["kv"], plan["schedule"]
        (pre, pc), (dec, dc) = phase("prefill"), phase("decode")
        return cls(pre, pc, dec, dc,
                   gpu_kv_tokens=kv["gpu_kv_tokens_per_replica"] if gpu_kv_tokens is None else gpu_kv_tokens,
                   host_buffer_tokens=(kv["host_buffer_tokens_per_replica"] if host_buffer_tokens is None
                                       else host_buffer_tokens),
                   page_size_tokens=kv["page_size_tokens"],
                   max_prefill_tokens=sched["max_prefill_tokens"] or sched.get("max_batched_tokens") or 1,
                   decode_max_seqs=sched["decode_max_seqs"],
                   prefill_to_decode_threshold_tokens=sched["prefill_to_decode_threshold_tokens"],
                   decode_to_prefill_threshold_tokens=sched["decode_to_prefill_threshold_tokens"])

    @property
    def resharding(self) -> bool:
        return (self.prefill, self.prefill_counts) != (self.decode, self.decode_counts)

    def policy(self) -> Policy:
        """The scheduler policy the runtime's engine derives from the plan."""
        buf = self.host_buffer_tokens
        return Policy(resharding=self.resharding, use_buffer=buf > 0, max_prefill_tokens=max(1, self.max_prefill_tokens),
                      decode_max_seqs=max(1, self.decode_max_seqs),
                      prefill_to_decode_threshold_tokens=min(self.prefill_to_decode_threshold_tokens, buf) or buf,
                      decode_to_prefill_threshold_tokens=self.decode_to_prefill_threshold_tokens,
                      prefill_pp=self.prefill.pp, decode_pp=self.decode.pp)


class _Groups:
    """Aggregate state of the decode groups: context sums and finishing steps, updated per join/finish."""

    def __init__(self, n: int) -> None:
        self.issued = [0] * n  # decode actions issued per group
        self.base = [0] * n  # sum over members of (prompt + 1 - first action index)
        self.finish: list[list] = [[] for _ in range(n)]  # heap of (last action index, seq index, seq)
        self.first: dict[int, int] = {}  # seq index -> its first decode action index in its group

    def join(self, seq: Sequence) -> None:
        g, start = seq.group, self.issued[seq.group]
        self.first[seq.index] = start
        self.base[g] += len(seq.prompt) + 1 - start
        heapq.heappush(self.finish[g], (start + seq.max_tokens - 2, seq.index, seq))

    def context_sum(self, g: int, members: int) -> int:
        """Summed context (tokens, the new one included) of the ``members`` sequences of group ``g``'s
        next action."""
        return self.base[g] + members * self.issued[g]

    def finished(self, g: int, action: int) -> list[Sequence]:
        """Members of group ``g`` whose last token the group's action ``action`` produces."""
        heap, done = self.finish[g], []
        while heap and heap[0][0] <= action:
            _, _, seq = heapq.heappop(heap)
            seq.finish_reason = "length"
            self.base[g] -= len(seq.prompt) + 1 - self.first.pop(seq.index)
            done.append(seq)
        return done


def _scheduler(plan: RuntimePlan, phase: str, on_join) -> ReplicaScheduler:
    """The runtime's scheduler for one replica of ``plan``, with an empty queue."""
    policy = plan.policy()
    pages = PageAllocator(max(1, -(-plan.gpu_kv_tokens // plan.page_size_tokens)), plan.page_size_tokens)
    return ReplicaScheduler(policy, pages, plan.host_buffer_tokens if policy.use_buffer else 0, set(), phase,
                            on_join=on_join)


def simulate_replica(cost: CostModel, plan: RuntimePlan, prompt_lens: list[int], output_lens: list[int],
                     phase: str = "prefill", stop_after_s: float | None = None) -> SimRun:
    """Simulate one replica serving these requests (in this order) under ``plan``; see the module docstring.
    With ``stop_after_s`` the simulation stops once its clock passes it (``SimRun.stopped``): a search
    that only needs to know whether the plan beats that time."""
    times = {"prefill": step_times(cost, plan.prefill, plan.prefill_counts),
             "decode": step_times(cost, plan.decode, plan.decode_counts)}
    layouts = {"prefill": (plan.prefill, plan.prefill_counts), "decode": (plan.decode, plan.decode_counts)}
    counts = {ph: c for ph, (_, c) in layouts.items()}
    groups = _Groups(max(1, plan.decode.pp))
    sched = _scheduler(plan, phase, groups.join)
    policy = sched.policy
    for i, (p, o) in enumerate(zip(prompt_lens, output_lens)):
        sched.add(Sequence(i, range(p), o, ignore_eos=True))
    run = SimRun(requests=len(prompt_lens))
    run.refused = len(sched.finished)
    kv_layer = {ph: cost.memory_terms(lay.tp, lay.ep).kv_bytes_per_token_layer for ph, lay in
                (("prefill", plan.prefill), ("decode", plan.decode))}
    host_bw = cost.cluster.host_link_gb_per_s * 1e9 * cost.cluster.gpu.link_efficiency
    pipes = {"prefill": Pipeline(plan.prefill.pp), "decode": Pipeline(plan.decode.pp)}
    now = mark = 0.0
    phase_s = {"prefill": 0.0, "decode": 0.0, "transition": 0.0}
    inflight: deque = deque()  # (action, completion time), oldest first

    def issue(act) -> float:
        if act.kind == "transition":
            end = now + cost.reload_s(*layouts[act.target])
            pipes[act.target] = Pipeline(len(counts[act.target]))
            pipes[act.target].hold(end)
            run.transitions += 1
            return end
        st = times[act.kind]
        seqs = act.seqs.values()
        if act.kind == "prefill":
            run.prefill_batches += 1
            lens = [len(s.prompt) for s in seqs]
            tokens = sum(lens)
            load = AttentionLoad.prompts(len(lens), tokens, sum(n * n for n in lens))
            swap_out = tokens * kv_layer["prefill"] / host_bw if policy.use_buffer else 0.0
            stage = st.stage_times(tokens, len(lens), [load], [swap_out] * len(counts["prefill"]))
            return pipes["prefill"].run(now, stage)
        run.decode_steps += 1
        g, n = act.group, len(act.seqs)
        load = AttentionLoad.decode(n, groups.context_sum(g, n))
        groups.issued[g] += 1
        setup = None
        if act.swap_in:
            tokens = sum(t for _, t, _ in act.swap_in)
            run.swap_in_tokens += tokens
            swapped = tokens * kv_layer["decode"] / host_bw
            setup = [c * swapped for c in counts["decode"]]
        return pipes["decode"].run(now, st.stage_times(n, n, [load]), setup)

    while True:
        while True:
            act = sched.next_action()
            if act.kind in ("done", "wait"):
                break
            if not inflight:
                mark = now  # the replica was idle: charge from now
            index = groups.issued[act.group] if act.kind == "decode" else -1
            inflight.append((act, issue(act), index))
        if not inflight:
            break
        act, end, index = inflight.popleft()
        now = max(now, end)
        if stop_after_s is not None and now > stop_after_s:
            run.stopped = True
            break
        phase_s[act.kind] += now - mark
        mark = now
        if act.kind == "transition":
            sched.on_transition_done()
        elif act.kind == "prefill":
            done = [s for s in act.seqs.values() if s.max_tokens <= 1]
            for s in done:
                s.finish_reason = "length"
            sched.complete(act, done)
        else:
            sched.complete(act, groups.finished(act.group, index))
    run.wall_s = now
    run.prefill_s, run.decode_s, run.transition_s = phase_s["prefill"], phase_s["decode"], phase_s["transition"]
    served = [s for s in sched.finished if s.finish_reason != "error"]
    run.prompt_tokens = sum(len(s.prompt) for s in served)
    run.output_tokens = sum(s.max_tokens for s in served)
    return run


def simulate_runtime(cost: CostModel, plan: RuntimePlan, stop_after_s: float | None = None,
                     sample: bool = True) -> SimRun:
    """Simulate the DP replicas serving their round-robin shares of ``cost.workload`` (as the runtime deals
    requests: request ``i`` to replica ``i mod dp``); wall time is the slowest replica's. With ``sample``, a
    run of many replicas steps through those likely to be slowest (:mod:`~seesaw.planner.simulate.replicas`).
    ``stop_after_s``: as :func:`simulate_replica` (the first replica that passes it ends the simulation)."""
    run = SimRun()
    w = cost.workload
    shares = replica_shares(w.prompt_lens, w.output_lens, plan.prefill.dp)
    chosen = replicas_to_simulate(shares, sample)
    for r in chosen:
        run.add_replica(simulate_replica(cost, plan, *shares[r], stop_after_s=stop_after_s))
        if run.stopped:
            return run
    admit = _scheduler(plan, "prefill", None)
    counted_only(run, shares, chosen, lambda p, o: admit.refusal(p, o) is None)
    return run

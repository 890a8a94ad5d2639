"""Transition-minimizing scheduler of one DP replica (DESIGN.md section 1; Seesaw paper section 5).

The policy the runtime executes and the planner's simulator replays: both drive this very class, so the
simulated counts (prefill batches, decode steps, transitions, swap-ins) are the runtime's.

Re-sharding plans: prefill under the prefill layout until the host KV buffer holds the prefill->decode
threshold (or nothing fitting waits), switch to decode, swap buffered sequences into free device pages
and decode with continuous batching (sequences join as they are swapped in and leave at EOS or
max_tokens), and switch back to prefill once the buffer has drained to the decode->prefill threshold while
prompts wait; running sequences stay resident in the device cache across the switch. Plans with one
layout (no host buffer) prefill straight into the device cache and interleave prefill and decode steps,
prefill first.

Pipelining: every forward action is one micro-batch, and up to ``pp`` of them (the current phase's PP
degree) are in flight at once, so PP stages overlap across steps, not only inside one: prefill batches are
independent, and decode keeps the running sequences in ``pp`` groups, each of which starts its next step
as soon as its previous one returns (the paper's and vLLM's PP schedule). A sequence joins the smallest
idle group when it starts running (the smallest group when all are in flight) and stays in it. A phase
switch waits (``Action("wait")``) until nothing is in flight.

Pages for a sequence's whole budget (prompt + max_tokens) are reserved when it enters the device cache,
so nothing is ever preempted; a request whose budget exceeds the device cache or whose prompt exceeds the
host buffer is refused up front (``finish_reason: "error"``).

Cost per call: ``O(1)`` plus the sequences that start, finish or are prefilled, and C-level copies of a
decode group (no per-sequence Python work per decode step), so the simulator can replay large traces.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from collections.abc import Sequence as TokenIds
from dataclasses import dataclass, field
from functools import cached_property

from seesaw.schedule.allocators import BufferAllocator, PageAllocator
from seesaw.schedule.batch import ForwardBatch, SamplingParams


@dataclass(eq=False)
class Sequence:
    """One request. ``prompt`` holds its token ids (the simulator passes ``range(prompt_len)``: only the
    length matters there); ``output`` the sampled tokens; ``group`` its decode group while running."""

    index: int
    prompt: TokenIds[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    ignore_eos: bool = False
    output: list[int] = field(default_factory=list)
    buffer_start: int | None = None
    pages: list[int] | None = None
    finish_reason: str | None = None
    error: str | None = None
    group: int | None = None

    @property
    def context_len(self) -> int:
        return len(self.prompt) + len(self.output)


@dataclass(eq=False)
class Action:
    """``kind``: "prefill" | "decode" (one micro-batch of ``seqs``) | "transition" | "wait" (the in-flight
    actions must return first) | "done".

    ``swap_in``: buffered sequences' KV to copy into their device pages before this action runs,
    ``(buffer start, tokens, pages)`` each; ``group``: the decode group a decode action steps.
    """

    kind: str
    seqs: dict[int, Sequence] = field(default_factory=dict, repr=False)  # sequence index -> sequence
    swap_in: list[tuple[int, int, list[int]]] = field(default_factory=list)
    target: str | None = None  # transition target phase
    group: int | None = None
    micro_batch: int = 0
    buffered: bool = False  # prefill writes its KV to the host buffer (else to device pages)
    page_size: int = 16

    @cached_property
    def micro_batches(self) -> list[ForwardBatch]:
        """What the workers run: one :class:`ForwardBatch` (built on first use; the simulator never asks)."""
        seqs = list(self.seqs.values())
        if self.kind == "prefill":
            return [ForwardBatch(
                mode="prefill", seq_ids=[s.index for s in seqs], tokens=[list(s.prompt) for s in seqs],
                context_lens=[len(s.prompt) for s in seqs],
                block_tables=None if self.buffered else [s.pages for s in seqs], page_size=self.page_size,
                buffer_starts=[s.buffer_start for s in seqs] if self.buffered else None,
                sampling=[s.sampling for s in seqs], sample_index=[0] * len(seqs), micro_batch=self.micro_batch)]
        if self.kind == "decode":
            return [ForwardBatch(
                mode="decode", seq_ids=[s.index for s in seqs], tokens=[[s.output[-1]] for s in seqs],
                context_lens=[s.context_len for s in seqs],
                block_tables=[s.pages for s in seqs], page_size=self.page_size,
                sampling=[s.sampling for s in seqs], sample_index=[len(s.output) for s in seqs],
                micro_batch=self.micro_batch)]
        return []


@dataclass
class Policy:
    """The plan's schedule for one replica."""

    resharding: bool  # prefill and decode layouts (or their stage partitions) differ
    use_buffer: bool
    max_prefill_tokens: int
    decode_max_seqs: int
    prefill_to_decode_threshold_tokens: int
    decode_to_prefill_threshold_tokens: int
    prefill_pp: int
    decode_pp: int

    def __post_init__(self) -> None:
        if self.use_buffer and self.decode_to_prefill_threshold_tokens >= self.prefill_to_decode_threshold_tokens:
            raise ValueError(f"decode->prefill threshold ({self.decode_to_prefill_threshold_tokens} tokens) must be "
                             f"below the prefill->decode threshold ({self.prefill_to_decode_threshold_tokens}): "
                             "otherwise the replica switches phases without decoding")


class ReplicaScheduler:
    """Decides the next action of one replica. Pure bookkeeping: no torch, no processes.

    Drive it as the runtime does: call :meth:`next_action` until it answers "wait" or "done", then report
    the oldest in-flight action's result (:meth:`on_tokens` / :meth:`complete`, or
    :meth:`on_transition_done`), and repeat. ``on_join(seq)``, when set, is called whenever a sequence
    starts running (joins a decode group).
    """

    def __init__(self, policy: Policy, pages: PageAllocator, buffer_tokens: int, eos_ids: set[int],
                 phase: str = "prefill", on_join: Callable[[Sequence], None] | None = None) -> None:
        """``phase``: the layout the replica's workers hold now ("prefill" at start-up; "decode" after a
        run that ended in decode): a buffered resharding replica first transitions to prefill from it."""
        self.policy = policy
        self.pages = pages
        self.buffer = BufferAllocator(buffer_tokens)
        self.eos_ids = eos_ids
        self.on_join = on_join
        self.waiting: deque[Sequence] = deque()
        self.buffered: deque[Sequence] = deque()
        self.groups: list[dict[int, Sequence]] = [{} for _ in range(max(1, policy.decode_pp))]
        self.group_busy = [False] * len(self.groups)
        self.num_running = 0
        self.finished: list[Sequence] = []
        self.phase = phase
        self.inflight = 0  # actions issued and not yet returned
        self._mb = 0  # micro-batch counter
        self._next_group = 0  # decode groups are offered round robin
        self._pending_swap: list[tuple[int, int, list[int]]] = []  # admitted, not yet sent with an action
        self._transitioning = False  # a transition is in flight: nothing else may be issued
        self._prefill_inflight = 0  # sequences inside in-flight direct-policy prefills (pages held, not running)

    # -- admission ------------------------------------------------------------------------------------
    def refusal(self, prompt_tokens: int, max_tokens: int) -> str | None:
        """Why a request of this prompt length and ``max_tokens`` can never fit, or None when it can."""
        if not self.pages.can_allocate_total(prompt_tokens + max_tokens):
            return (f"prompt ({prompt_tokens}) + max_tokens ({max_tokens}) exceed the device KV cache "
                    f"({self.pages.num_pages * self.pages.page_size} tokens)")
        if self.policy.use_buffer and prompt_tokens > self.buffer.capacity:
            return f"prompt ({prompt_tokens} tokens) exceeds the host KV buffer ({self.buffer.capacity} tokens)"
        return None

    def add(self, seq: Sequence) -> None:
        """Queue a request, or refuse it now (``finish_reason "error"``) if it can never fit (:meth:`refusal`)."""
        why = self.refusal(len(seq.prompt), seq.max_tokens)
        if why is not None:
            self._refuse(seq, why)
        else:
            self.waiting.append(seq)

    def _refuse(self, seq: Sequence, why: str) -> None:
        seq.finish_reason, seq.error = "error", why
        self.finished.append(seq)

    @property
    def running(self) -> list[Sequence]:
        """Running sequences, group by group (``O(running)``: for tests and reports)."""
        return [s for g in self.groups for s in g.values()]

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.buffered or self.num_running or self.inflight)

    @property
    def window(self) -> int:
        """Actions the current phase may have in flight: its PP degree."""
        return max(1, self.policy.prefill_pp if self.phase == "prefill" else self.policy.decode_pp)

    # -- decisions ------------------------------------------------------------------------------------
    def next_action(self) -> Action:
        """The next action to issue; "wait" when the in-flight ones must return first."""
        if not self.has_work:
            return Action("done")
        if self.inflight >= self.window or self._transitioning:
            return Action("wait")
        act = self._next_buffered() if self.policy.use_buffer else self._next_direct()
        if act.kind in ("prefill", "decode", "transition"):
            self.inflight += 1
            self._transitioning = act.kind == "transition"
        return act

    def _switch(self, target: str) -> Action:
        if self.inflight:
            return Action("wait")  # drain the pipeline before changing phase
        self.phase = target
        if self.policy.resharding:
            return Action("transition", target=target)
        return self._next_buffered() if self.policy.use_buffer else self._next_direct()

    def _idle_group(self) -> int | None:
        """The next decode group (round robin) that has sequences and is not in flight."""
        n = len(self.groups)
        for k in range(n):
            g = (self._next_group + k) % n
            if self.groups[g] and not self.group_busy[g]:
                return g
        return None

    def _next_buffered(self) -> Action:
        p = self.policy
        if self.phase == "prefill":
            if self.waiting and self.buffer.used < p.prefill_to_decode_threshold_tokens:
                batch = self._take_prefill(self._buffer_alloc)
                if batch:
                    return self._prefill_action(batch, buffered=True)
            return self._switch("decode")
        self._admit_buffered()
        # a swap-in not yet sent must go out with a decode action before the buffer range it reads is reused
        if self.waiting and self.buffer.used <= p.decode_to_prefill_threshold_tokens and not self._pending_swap:
            return self._switch("prefill")
        g = self._idle_group()
        if g is not None:
            return self._decode_action(g)
        if self.inflight:
            return Action("wait")
        if self.waiting:
            return self._switch("prefill")
        raise RuntimeError("scheduler stalled: buffered sequences cannot be admitted")  # guarded by add()

    def _next_direct(self) -> Action:
        if self.waiting and self.num_running + self._prefill_inflight < self.policy.decode_max_seqs:
            batch = self._take_prefill(self._page_alloc)
            if batch:
                return self._prefill_action(batch, buffered=False)
        g = self._idle_group()
        if g is not None:
            return self._decode_action(g)
        if self.inflight:
            return Action("wait")
        raise RuntimeError("scheduler stalled: no sequence fits the device cache")  # guarded by add()

    def _buffer_alloc(self, seq: Sequence) -> bool:
        start = self.buffer.allocate(len(seq.prompt))
        if start is None:
            return False
        seq.buffer_start = start
        return True

    def _page_alloc(self, seq: Sequence) -> bool:
        budget = len(seq.prompt) + seq.max_tokens
        if not self.pages.can_allocate(budget):
            return False
        seq.pages = self.pages.allocate(budget)
        return True

    def _take_prefill(self, allocate) -> list[Sequence]:
        batch, tokens = [], 0
        limit = (self.policy.decode_max_seqs - self.num_running - self._prefill_inflight
                 if not self.policy.use_buffer else None)
        while self.waiting:
            seq = self.waiting[0]
            if batch and tokens + len(seq.prompt) > self.policy.max_prefill_tokens:
                break
            if limit is not None and len(batch) >= limit:
                break
            if not allocate(seq):
                break
            batch.append(self.waiting.popleft())
            tokens += len(seq.prompt)
        return batch

    def _join(self, seq: Sequence) -> None:
        """``seq`` starts running: it joins the smallest idle decode group (the smallest one if all are in
        flight), lowest index first."""
        idle = [g for g in range(len(self.groups)) if not self.group_busy[g]] or range(len(self.groups))
        g = min(idle, key=lambda i: len(self.groups[i]))
        seq.group = g
        self.groups[g][seq.index] = seq
        self.num_running += 1
        if self.on_join is not None:
            self.on_join(seq)

    def _admit_buffered(self) -> None:
        """Swap buffered sequences into free pages while the running cap allows (the copies travel with the
        next decode action)."""
        while self.buffered and self.num_running < self.policy.decode_max_seqs:
            seq = self.buffered[0]
            if not self._page_alloc(seq):
                break
            self.buffered.popleft()
            n = len(seq.prompt)
            self._pending_swap.append((seq.buffer_start, n, list(seq.pages)))
            self.buffer.release(seq.buffer_start, n)
            seq.buffer_start = None
            self._join(seq)

    def _next_mb(self) -> int:
        self._mb += 1
        return self._mb - 1

    def _prefill_action(self, batch: list[Sequence], buffered: bool) -> Action:
        if not buffered:
            self._prefill_inflight += len(batch)
        return Action("prefill", seqs={s.index: s for s in batch}, micro_batch=self._next_mb(), buffered=buffered,
                      page_size=self.pages.page_size)

    def _decode_action(self, g: int) -> Action:
        """Step decode group ``g``; the swap-ins admitted since the last action travel with it."""
        self.group_busy[g] = True
        self._next_group = (g + 1) % len(self.groups)
        swap, self._pending_swap = self._pending_swap, []
        return Action("decode", seqs=dict(self.groups[g]), swap_in=swap, group=g, micro_batch=self._next_mb(),
                      page_size=self.pages.page_size)

    # -- results --------------------------------------------------------------------------------------
    def on_transition_done(self) -> None:
        """The in-flight transition finished on every rank."""
        self.inflight -= 1
        self._transitioning = False

    def on_tokens(self, act: Action, tokens: dict[int, int]) -> list[Sequence]:
        """Record one sampled token per sequence of the returned prefill/decode action ``act``; returns
        the newly finished sequences (EOS unless ignored, or ``max_tokens`` reached)."""
        done = []
        for index, tok in tokens.items():
            seq = act.seqs[index]
            seq.output.append(tok)
            stop = tok in self.eos_ids and not seq.ignore_eos
            if stop or len(seq.output) >= seq.max_tokens:
                seq.finish_reason = "stop" if stop else "length"
                done.append(seq)
        self.complete(act, done)
        return done

    def complete(self, act: Action, done: list[Sequence]) -> None:
        """The oldest in-flight prefill/decode action ``act`` returned and the sequences ``done`` (with
        their ``finish_reason`` set) finished: free their space, start the prefilled ones, and free the
        action's decode group. ``O(done)`` for decode, ``O(batch)`` for prefill."""
        self.inflight -= 1
        if act.kind == "prefill":
            if not self.policy.use_buffer:
                self._prefill_inflight -= len(act.seqs)
            for seq in act.seqs.values():
                if seq.finish_reason is None:
                    if self.policy.use_buffer:
                        self.buffered.append(seq)
                    else:
                        self._join(seq)
        else:
            self.group_busy[act.group] = False
        for seq in done:
            if seq.buffer_start is not None:
                self.buffer.release(seq.buffer_start, len(seq.prompt))
                seq.buffer_start = None
            if seq.pages is not None:
                self.pages.release(seq.pages)
                seq.pages = None
            if seq.group is not None:
                del self.groups[seq.group][seq.index]
                seq.group = None
                self.num_running -= 1
        self.finished.extend(done)

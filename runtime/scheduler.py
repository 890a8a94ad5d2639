"""Transition-minimizing scheduler of one DP replica (DESIGN.md section 1; Seesaw paper section 5).

Re-sharding plans: prefill under the prefill layout until the host KV buffer holds the prefill->decode
threshold (or nothing fitting waits), switch to decode, swap buffered sequences into free device pages
and decode with continuous batching (sequences join as they are swapped in and leave at EOS or
max_tokens), and switch back to prefill once the buffer has drained to the decode->prefill threshold while
prompts wait; running sequences stay resident in the device cache across the switch. Plans with one
layout (no host buffer) prefill straight into the device cache and interleave prefill and decode steps,
prefill first, as vLLM's scheduler does.

Pipelining: every forward action is one micro-batch, and up to ``pp`` of them (the current phase's PP
degree) are in flight at once, so PP stages overlap across steps, not only inside one: prefill batches are
independent, and decode splits the running sequences into ``pp`` groups that each start their next step
as soon as their previous one returns (the paper's and vLLM's PP schedule). A phase switch waits
(``Action("wait")``) until nothing is in flight.

Pages for a sequence's whole budget (prompt + max_tokens) are reserved when it enters the device cache,
so nothing is ever preempted; a request whose budget exceeds the device cache or whose prompt exceeds the
host buffer is refused up front (``finish_reason: "error"``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from seesaw.runtime.batch import ForwardBatch, SamplingParams
from seesaw.runtime.kv_cache import BufferAllocator, PageAllocator


@dataclass
class Sequence:
    index: int
    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    ignore_eos: bool = False
    output: list[int] = field(default_factory=list)
    buffer_start: int | None = None
    pages: list[int] | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def context_len(self) -> int:
        return len(self.prompt) + len(self.output)


@dataclass
class Action:
    """``kind``: "prefill" | "decode" (one micro-batch in ``micro_batches``) | "transition" | "wait" (the
    in-flight actions must return first) | "done"."""

    kind: str
    micro_batches: list[ForwardBatch] = field(default_factory=list)
    swap_in: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (buffer start, tokens, pages)
    target: str | None = None  # transition target phase
    seqs: dict[int, "Sequence"] = field(default_factory=dict, repr=False)  # sequence index -> sequence


@dataclass
class Policy:
    """The plan's schedule for one replica."""

    resharding: bool  # prefill and decode layouts differ (or a host buffer is used)
    use_buffer: bool
    max_prefill_tokens: int
    decode_max_seqs: int
    prefill_to_decode_threshold_tokens: int
    decode_to_prefill_threshold_tokens: int
    prefill_pp: int
    decode_pp: int


class ReplicaScheduler:
    """Decides the next action of one replica. Pure bookkeeping: no torch, no processes."""

    def __init__(self, policy: Policy, pages: PageAllocator, buffer_tokens: int, eos_ids: set[int],
                 phase: str = "prefill") -> None:
        """``phase``: the layout the replica's workers hold now ("prefill" at start-up; "decode" after a
        run that ended in decode): a buffered resharding replica first transitions to prefill from it."""
        self.policy = policy
        self.pages = pages
        self.buffer = BufferAllocator(buffer_tokens)
        self.eos_ids = eos_ids
        self.waiting: deque[Sequence] = deque()
        self.buffered: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.finished: list[Sequence] = []
        self.phase = phase
        self.inflight = 0  # actions issued and not yet returned
        self.busy: set[int] = set()  # indices of running sequences inside an in-flight decode action
        self._mb = 0  # micro-batch counter
        self._transitioning = False  # a transition is in flight: nothing else may be issued
        self._prefill_inflight = 0  # sequences inside in-flight direct-policy prefills (pages held, not running)

    # -- admission ------------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        budget = len(seq.prompt) + seq.max_tokens
        if not self.pages.can_allocate_total(budget):
            self._refuse(seq, f"prompt ({len(seq.prompt)}) + max_tokens ({seq.max_tokens}) exceed the device "
                              f"KV cache ({self.pages.num_pages * self.pages.page_size} tokens)")
        elif self.policy.use_buffer and len(seq.prompt) > self.buffer.capacity:
            self._refuse(seq, f"prompt ({len(seq.prompt)} tokens) exceeds the host KV buffer "
                              f"({self.buffer.capacity} tokens)")
        else:
            self.waiting.append(seq)

    def _refuse(self, seq: Sequence, why: str) -> None:
        seq.finish_reason, seq.error = "error", why
        self.finished.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.buffered or self.running or self.inflight)

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

    def _available(self) -> list[Sequence]:
        """Running sequences not inside an in-flight decode action."""
        return [s for s in self.running if s.index not in self.busy]

    def _next_buffered(self) -> Action:
        p = self.policy
        if self.phase == "prefill":
            if self.waiting and self.buffer.used < p.prefill_to_decode_threshold_tokens:
                batch = self._take_prefill(lambda s: self._buffer_alloc(s))
                if batch:
                    return self._prefill_action(batch, buffered=True)
            return self._switch("decode")
        swap = self._admit_buffered()
        if self.waiting and self.buffer.used <= p.decode_to_prefill_threshold_tokens and not swap:
            return self._switch("prefill")
        if self._available():
            act = self._decode_action()
            act.swap_in = swap
            return act
        if self.inflight:
            return Action("wait")
        if self.waiting:
            return self._switch("prefill")
        raise RuntimeError("scheduler stalled: buffered sequences cannot be admitted")  # guarded by add()

    def _next_direct(self) -> Action:
        if self.waiting and len(self.running) + self._prefill_inflight < self.policy.decode_max_seqs:
            batch = self._take_prefill(self._page_alloc)
            if batch:
                return self._prefill_action(batch, buffered=False)
        if self._available():
            return self._decode_action()
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
        limit = (self.policy.decode_max_seqs - len(self.running) - self._prefill_inflight
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

    def _admit_buffered(self) -> list[tuple[int, int, list[int]]]:
        swap = []
        while self.buffered and len(self.running) < self.policy.decode_max_seqs:
            seq = self.buffered[0]
            if not self._page_alloc(seq):
                break
            self.buffered.popleft()
            n = len(seq.prompt)
            swap.append((seq.buffer_start, n, list(seq.pages)))
            self.buffer.release(seq.buffer_start, n)
            seq.buffer_start = None
            self.running.append(seq)
        return swap

    def _next_mb(self) -> int:
        self._mb += 1
        return self._mb - 1

    def _prefill_action(self, batch: list[Sequence], buffered: bool) -> Action:
        mb = ForwardBatch(
            mode="prefill", seq_ids=[s.index for s in batch], tokens=[list(s.prompt) for s in batch],
            context_lens=[len(s.prompt) for s in batch],
            block_tables=None if buffered else [s.pages for s in batch], page_size=self.pages.page_size,
            buffer_starts=[s.buffer_start for s in batch] if buffered else None,
            sampling=[s.sampling for s in batch], sample_index=[0] * len(batch), micro_batch=self._next_mb())
        if not buffered:
            self._prefill_inflight += len(batch)
        return Action("prefill", micro_batches=[mb], seqs={s.index: s for s in batch})

    def _decode_action(self) -> Action:
        """Decode the next group: up to ``ceil(running / decode_pp)`` available sequences."""
        group = -(-len(self.running) // max(1, self.policy.decode_pp))
        part = self._available()[:group]
        self.busy.update(s.index for s in part)
        mb = ForwardBatch(
            mode="decode", seq_ids=[s.index for s in part], tokens=[[s.output[-1]] for s in part],
            context_lens=[s.context_len for s in part],
            block_tables=[s.pages for s in part], page_size=self.pages.page_size,
            sampling=[s.sampling for s in part], sample_index=[len(s.output) for s in part],
            micro_batch=self._next_mb())
        return Action("decode", micro_batches=[mb], seqs={s.index: s for s in part})

    # -- results --------------------------------------------------------------------------------------
    def on_transition_done(self) -> None:
        """The in-flight transition finished on every rank."""
        self.inflight -= 1
        self._transitioning = False

    def on_tokens(self, act: Action, tokens: dict[int, int]) -> list[Sequence]:
        """Record one sampled token per sequence of the returned prefill/decode action ``act``; returns
        the newly finished sequences."""
        self.inflight -= 1
        kind = act.kind
        if kind == "prefill" and not self.policy.use_buffer:
            self._prefill_inflight -= len(act.seqs)
        self.busy.difference_update(act.seqs)
        done = []
        for index, tok in tokens.items():
            seq = act.seqs[index]
            seq.output.append(tok)
            if (tok in self.eos_ids and not seq.ignore_eos) or len(seq.output) >= seq.max_tokens:
                seq.finish_reason = "stop" if tok in self.eos_ids and not seq.ignore_eos else "length"
                done.append(seq)
        for seq in act.seqs.values():
            if seq.finish_reason is None:
                if kind == "prefill":
                    (self.buffered if self.policy.use_buffer else self.running).append(seq)
                continue
            if seq.buffer_start is not None:
                self.buffer.release(seq.buffer_start, len(seq.prompt))
                seq.buffer_start = None
            if seq.pages is not None:
                self.pages.release(seq.pages)
                seq.pages = None
            if seq in self.running:
                self.running.remove(seq)
        self.finished.extend(done)
        return done

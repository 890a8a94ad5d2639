"""Transition-minimizing scheduler of one DP replica (DESIGN.md section 1; Seesaw paper section 5).

Re-sharding plans: prefill under the prefill layout until the host KV buffer holds the prefill->decode
threshold (or nothing fitting waits), switch to decode, swap buffered sequences into free device pages
and decode with continuous batching (sequences join as they are swapped in and leave at EOS or
max_tokens), and switch back to prefill once the buffer has drained to the decode->prefill threshold while
prompts wait; running sequences stay resident in the device cache across the switch. Plans with one
layout (no host buffer) prefill straight into the device cache and interleave prefill and decode steps,
prefill first, as vLLM's scheduler does.

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
    kind: str  # "prefill" | "decode" | "transition" | "done"
    micro_batches: list[ForwardBatch] = field(default_factory=list)
    swap_in: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (buffer start, tokens, pages)
    target: str | None = None  # transition target phase


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


def _split(items: list, parts: int) -> list[list]:
    parts = max(1, min(parts, len(items)))
    q, r = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        n = q + (1 if i < r else 0)
        out.append(items[start:start + n])
        start += n
    return out


class ReplicaScheduler:
    """Decides the next action of one replica. Pure bookkeeping: no torch, no processes."""

    def __init__(self, policy: Policy, pages: PageAllocator, buffer_tokens: int, eos_ids: set[int]) -> None:
        self.policy = policy
        self.pages = pages
        self.buffer = BufferAllocator(buffer_tokens)
        self.eos_ids = eos_ids
        self.waiting: deque[Sequence] = deque()
        self.buffered: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.finished: list[Sequence] = []
        self.phase = "prefill"

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
        return bool(self.waiting or self.buffered or self.running)

    # -- decisions ------------------------------------------------------------------------------------
    def next_action(self) -> Action:
        if not self.has_work:
            return Action("done")
        if self.policy.use_buffer:
            return self._next_buffered()
        return self._next_direct()

    def _switch(self, target: str) -> Action:
        self.phase = target
        if self.policy.resharding:
            return Action("transition", target=target)
        return self.next_action()

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
        if self.running:
            act = self._decode_action()
            act.swap_in = swap
            return act
        if self.waiting:
            return self._switch("prefill")
        raise RuntimeError("scheduler stalled: buffered sequences cannot be admitted")  # guarded by add()

    def _next_direct(self) -> Action:
        if self.waiting and len(self.running) < self.policy.decode_max_seqs:
            batch = self._take_prefill(self._page_alloc)
            if batch:
                return self._prefill_action(batch, buffered=False)
        if self.running:
            return self._decode_action()
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
        limit = self.policy.decode_max_seqs - len(self.running) if not self.policy.use_buffer else None
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

    def _prefill_action(self, batch: list[Sequence], buffered: bool) -> Action:
        mbs = []
        for i, part in enumerate(_split(batch, self.policy.prefill_pp)):
            mbs.append(ForwardBatch(
                mode="prefill", seq_ids=[s.index for s in part], tokens=[list(s.prompt) for s in part],
                context_lens=[len(s.prompt) for s in part],
                block_tables=None if buffered else [s.pages for s in part], page_size=self.pages.page_size,
                buffer_starts=[s.buffer_start for s in part] if buffered else None,
                sampling=[s.sampling for s in part], sample_index=[0] * len(part), micro_batch=i))
        self._inflight = {s.index: s for s in batch}
        return Action("prefill", micro_batches=mbs)

    def _decode_action(self) -> Action:
        mbs = []
        ps = self.pages.page_size
        for i, part in enumerate(_split(self.running, self.policy.decode_pp)):
            mbs.append(ForwardBatch(
                mode="decode", seq_ids=[s.index for s in part], tokens=[[s.output[-1]] for s in part],
                context_lens=[s.context_len for s in part],
                block_tables=[s.pages for s in part], page_size=ps,
                sampling=[s.sampling for s in part], sample_index=[len(s.output) for s in part], micro_batch=i))
        self._inflight = {s.index: s for s in self.running}
        return Action("decode", micro_batches=mbs)

    # -- results --------------------------------------------------------------------------------------
    def on_tokens(self, kind: str, tokens: dict[int, int]) -> list[Sequence]:
        """Record one sampled token per sequence of the last prefill/decode action; returns the newly
        finished sequences."""
        done = []
        for index, tok in tokens.items():
            seq = self._inflight[index]
            seq.output.append(tok)
            if (tok in self.eos_ids and not seq.ignore_eos) or len(seq.output) >= seq.max_tokens:
                seq.finish_reason = "stop" if tok in self.eos_ids and not seq.ignore_eos else "length"
                done.append(seq)
        for seq in self._inflight.values():
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

"""The scheduler process: spawns one worker per rank, drives each DP replica's scheduler, and collects
tokens and metrics. Workers are ``torch.multiprocessing`` spawn processes joined by gloo (CPU) or NCCL
(CUDA); the scheduler talks to them only through queues.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from seesaw.codegen.plan import ExecutionPlan
from seesaw.ir.errors import InputError
from seesaw.runtime.kv_cache import HostKVBuffer, host_memory_dir
from seesaw.runtime.quantized import check_runnable
from seesaw.schedule.allocators import PageAllocator
from seesaw.schedule.replica import Policy, ReplicaScheduler, Sequence
from seesaw.runtime.transport import LocalWorkers, WorkerError  # noqa: F401 (re-exported for callers)
from seesaw.runtime.worker import WorkerConfig


@dataclass
class RunMetrics:
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    transition_s: float = 0.0
    transitions: int = 0
    kv_swap_out_bytes: int = 0
    kv_swap_in_bytes: int = 0
    transition_bytes: int = 0
    per_replica: list = field(default_factory=list)
    steps: list = field(default_factory=list)  # one dict per returned action, see Engine._step_record
    # with Engine(time_ops=True): every forward pass of every rank, {"rank", "mode", "context_lens", "ops":
    # [[instruction name, seconds], ...]} (PhaseProgram.op_times), warm-up calls excluded by the caller
    op_times: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("per_replica", "steps", "op_times")}
        d["tokens_per_s"] = (self.prompt_tokens + self.output_tokens) / self.wall_s if self.wall_s else 0.0
        d["output_tokens_per_s"] = self.output_tokens / self.wall_s if self.wall_s else 0.0
        d["requests_per_s"] = self.requests / self.wall_s if self.wall_s else 0.0
        return d

#: The plan's ``kv_cache_dtype`` (``--kv-cache-dtype``) -> the torch dtype the KV cache and host buffer store:
#: e4m3 / e5m2 values with scale 1 (vLLM's default without calibrated KV scales), up-cast for attention.
KV_DTYPES = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}


def _use_cuda(plan: ExecutionPlan, device: str | None) -> bool:
    """Whether the workers run on CUDA: ``device`` when given (raises InputError for ``cuda`` where torch sees
    no CUDA device), else when the plan is for GPUs and one is present."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"cuda asked for, but torch {torch.__version__} sees no CUDA device on this "
                         "machine (torch.cuda.is_available() is False); use --device cpu")
    if device is not None:
        return device == "cuda"
    gpu = str(plan.cluster.get("gpu", {}).get("name", "")).lower() if isinstance(plan.cluster.get("gpu"), dict) else ""
    return torch.cuda.is_available() and gpu != "cpu"


def check_kv_overrides(plan: ExecutionPlan, gpu_kv_tokens: int | None, host_buffer_tokens: int | None) -> None:
    """Refuse KV sizes the plan cannot run with (before any worker starts).

    Raises:
        InputError: ``gpu_kv_tokens`` below one page; ``host_buffer_tokens`` negative, or 0 for a plan whose
            prefill and decode layouts differ (its KV cache reaches the decode layout only through the host
            buffer).
    """
    page = plan.kv.page_size_tokens
    if gpu_kv_tokens is not None and gpu_kv_tokens < page:
        raise InputError("--gpu-kv-tokens", f"must hold at least one page ({page} tokens), got {gpu_kv_tokens}")
    if host_buffer_tokens is None:
        return
    if host_buffer_tokens < 0:
        raise InputError("--host-buffer-tokens", f"must be 0 or more, got {host_buffer_tokens}")
    pre, dec = plan.prefill, plan.decode
    if host_buffer_tokens == 0 and (pre.layout, pre.stage_layers) != (dec.layout, dec.stage_layers):
        raise InputError("--host-buffer-tokens", f"0 cannot run this plan: it re-shards ({pre.layout} prefill, "
                         f"{dec.layout} decode) and its KV cache reaches the decode layout only through the host "
                         f"buffer; leave the plan's {plan.kv.host_buffer_tokens_per_replica} tokens or give a "
                         "size that holds the longest prompt")


def check_host_memory(plan: ExecutionPlan, gpu_pages: int, buffer_tokens: int, dtype: str) -> None:
    """On CPU ranks, refuse a run whose KV cache, host buffer and weights (in ``dtype``) cannot fit in the
    memory this machine has available now (``psutil.virtual_memory().available``), instead of being killed by
    the kernel part-way.

    ``gpu_pages``: KV pages per replica (``plan.kv.page_size_tokens`` tokens each); ``buffer_tokens``: host
    buffer tokens per replica; both are multiplied by dp. The plan's byte counts are for its own dtype
    (``fingerprint["dtype_bytes"]``; 1 byte per element for an FP8 KV cache) and are scaled to ``dtype``'s
    element size; a quantized checkpoint's weights are dequantized on load, ``num_parameters`` elements of
    ``dtype`` (its few scales counted too). The suggested
    ``--gpu-kv-tokens`` leaves half the available memory free for activations and the rest of the process.

    Raises:
        InputError: (field ``--gpu-kv-tokens``) naming the sizes, the plan's cluster and what to pass instead.
    """
    import psutil  # noqa: PLC0415

    fp = plan.model.fingerprint
    element = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    scale = element / max(1, fp.get("dtype_bytes", 2))
    dp = plan.prefill.layout.dp
    per_token = plan.kv.kv_bytes_per_token * (1 if fp.get("kv_cache_dtype") else scale)  # FP8 KV: 1 B, stored so
    kv = gpu_pages * plan.kv.page_size_tokens * per_token * dp
    buf = buffer_tokens * per_token * dp
    weights = plan.model.num_parameters * element if fp.get("quantization") else plan.model.weight_bytes * scale
    available = psutil.virtual_memory().available
    if kv + buf + weights > available:
        gpu = plan.cluster.get("gpu", {})
        cluster = f"{plan.cluster.get('num_gpus')}x{gpu.get('name', '?') if isinstance(gpu, dict) else gpu}"
        fit = max(plan.kv.page_size_tokens, int((available * 0.5 - weights - buf) / max(1.0, per_token * dp)))
        raise InputError("--gpu-kv-tokens", f"this plan (for {cluster}) needs {kv / 1e9:.1f} GB of KV cache, "
                         f"{buf / 1e9:.1f} GB of host buffer and {weights / 1e9:.1f} GB of weights in {dtype} on this "
                         f"machine, which has {available / 1e9:.1f} GB available; pass --gpu-kv-tokens {fit} (or less) "
                         "and --host-buffer-tokens, or plan for this machine's CPUs (--cluster Nxcpu)")


class Engine:
    """Runs a plan on a checkpoint folder. Use as a context manager (stops every worker on exit).

    ``gpu_kv_tokens`` / ``host_buffer_tokens`` override the plan's per-replica sizes (tests use tiny ones);
    ``keep_logits`` records every sampled token's logits in ``self.logits`` (tests); ``time_ops`` times every
    instruction of every forward pass on every rank (``RunMetrics.op_times`` of each :meth:`generate`, for
    ``seesaw-calibrate``; a few microseconds per instruction, and on CUDA a synchronize each). ``workers_factory``
    maps the :class:`WorkerConfig` to a transport (default: spawn local processes, :class:`LocalWorkers`;
    under torchrun, :class:`CollectiveWorkers`). Raises :class:`WorkerError` when a worker fails to start and
    :class:`~seesaw.ir.errors.InputError` for KV sizes the plan cannot run with (:func:`check_kv_overrides`)
    or, on CPU ranks, cannot fit in this machine's memory (:func:`check_host_memory`).
    """

    def __init__(self, plan: ExecutionPlan, checkpoint: str, *, device: str | None = None, dtype: str | None = None,
                 gpu_kv_tokens: int | None = None, host_buffer_tokens: int | None = None,
                 collective_timeout_s: float = 60.0, start_timeout_s: float = 600.0,
                 keep_logits: bool = False, workers_factory=None, host_buffer_path: str | None = None,
                 time_ops: bool = False) -> None:
        check_kv_overrides(plan, gpu_kv_tokens, host_buffer_tokens)
        check_runnable(plan.model.fingerprint)
        self.plan = plan
        self.keep_logits = keep_logits
        self._pending: list = []  # replies received while waiting for another kind
        self.logits: dict[int, list[torch.Tensor]] = {}  # sequence index -> logits of each sampled token
        self.cuda = _use_cuda(plan, device)
        self.dtype = dtype or ("bfloat16" if self.cuda else "float32")
        pre = plan.prefill.layout  # dp is the same in both phases
        self.world = pre.dp * pre.tp * pre.pp
        self.dp = pre.dp
        self.replica = self.world // self.dp
        page = plan.kv.page_size_tokens
        kv_tokens = gpu_kv_tokens if gpu_kv_tokens is not None else plan.kv.gpu_kv_tokens_per_replica
        self.gpu_pages = max(1, -(-kv_tokens // page))
        # CPU ranks fault in twice the pages of the plan's predicted peak KV at start-up (PagedKVCache.prefault)
        peak_tokens = plan.prediction.memory.kv_cache_bytes * self.replica // max(1, plan.kv.kv_bytes_per_token)
        self.prefault_pages = min(self.gpu_pages, -(-2 * peak_tokens // page))
        self.resharding = (plan.prefill.layout, plan.prefill.stage_layers) != (plan.decode.layout, plan.decode.stage_layers)
        buf = host_buffer_tokens if host_buffer_tokens is not None else plan.kv.host_buffer_tokens_per_replica
        self.use_buffer = buf > 0  # phase-split through the host buffer, as the plan was costed
        self._phases: list[str] | None = None  # each replica's worker layout after the last generate()
        self.buffer_tokens = buf if self.use_buffer else 0
        if not self.cuda:
            check_host_memory(plan, self.gpu_pages, self.buffer_tokens, self.dtype)
        self.kv_dtype = KV_DTYPES.get(plan.model.fingerprint.get("kv_cache_dtype"))  # None: the compute dtype
        self._tmp = tempfile.mkdtemp(prefix="seesaw-run-")
        self._shm = None  # folder of the host buffer's backing file when the engine makes one
        self.host = None
        fp = plan.model.fingerprint
        if self.use_buffer:
            if host_buffer_path is None:
                self._shm = tempfile.mkdtemp(prefix="seesaw-kv-", dir=host_memory_dir())
                host_buffer_path = os.path.join(self._shm, "host_kv_buffer")
            self.host = HostKVBuffer.create(host_buffer_path, fp["num_hidden_layers"],
                                            fp["num_key_value_heads"], self.buffer_tokens * self.dp, fp["head_dim"],
                                            getattr(torch, self.kv_dtype or self.dtype))
            if not self.cuda:
                self.host.prefault()
        self.worker_config = cfg = WorkerConfig(plan_json=plan.model_dump_json(), checkpoint=str(checkpoint),
                           init_method=f"file://{os.path.join(self._tmp, 'dist_init')}", world_size=self.world,
                           device="cuda" if self.cuda else "cpu", dtype=self.dtype, gpu_pages=self.gpu_pages,
                           host_buffer=self.host.spec() if self.host else None,
                           collective_timeout_s=collective_timeout_s,
                           prefault_pages=0 if self.cuda else self.prefault_pages, time_ops=time_ops,
                           kv_dtype=self.kv_dtype)
        try:
            self.workers = (workers_factory or (lambda c: LocalWorkers(c, start_timeout_s)))(cfg)
        except BaseException:
            self.close()
            raise
        self.ready = self.workers.ready

    def _send(self, ranks, cmd) -> None:
        self.workers.send(ranks, cmd)

    def _get(self):
        return self.workers.get()

    def replica_ranks(self, r: int) -> range:
        return range(r * self.replica, (r + 1) * self.replica)

    def close(self, wait_s: float = 5.0) -> None:
        """Stop every worker (those still busy after ``wait_s`` seconds are terminated) and remove the host
        buffer file."""
        if getattr(self, "workers", None) is not None:
            self.workers.close(wait_s)
            self.workers = None
        if self.host is not None:
            self.host.unlink()
            self.host = None
        for folder in (self._tmp, self._shm):
            try:
                if folder:
                    os.rmdir(folder)
            except OSError:
                pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        # a run that failed or was interrupted does not wait for workers to finish their queued steps
        self.close(5.0 if exc_type is None else 0.5)

    # -- generation -------------------------------------------------------------------------------------
    def _scheduler(self, eos_ids: set[int], phase: str = "prefill") -> ReplicaScheduler:
        s = self.plan.schedule
        policy = Policy(resharding=self.resharding, use_buffer=self.use_buffer,
                        max_prefill_tokens=max(1, s.max_prefill_tokens or s.max_batched_tokens or 1),
                        decode_max_seqs=max(1, s.decode_max_seqs),
                        prefill_to_decode_threshold_tokens=min(s.prefill_to_decode_threshold_tokens,
                                                               self.buffer_tokens) or self.buffer_tokens,
                        decode_to_prefill_threshold_tokens=s.decode_to_prefill_threshold_tokens,
                        prefill_pp=self.plan.prefill.layout.pp, decode_pp=self.plan.decode.layout.pp)
        return ReplicaScheduler(policy, PageAllocator(self.gpu_pages, self.plan.kv.page_size_tokens),
                                self.buffer_tokens, eos_ids, phase)

    def generate(self, sequences: list[Sequence], eos_ids: set[int], on_progress=None,
                 on_finished=None) -> tuple[list[Sequence], RunMetrics]:
        """Serve every sequence; returns them (with outputs and finish reasons) and the run's metrics.
        ``on_finished(seq)`` is called as each sequence finishes (so a caller can keep it whatever happens
        later); ``on_progress(phase, finished_count, new_tokens)`` after every forward reply.

        Each replica keeps up to its phase's ``pp`` forward actions in flight (see the scheduler), so the
        loop issues whatever the schedulers allow, then waits for the next reply. A worker's replies come
        in the order of its commands, so a replica's forward replies match its in-flight actions first
        in, first out. Time is charged to phases by completion: each returned action is charged the time
        since the replica's previous completion (or since it became busy), so overlapping actions are not
        counted twice; ``RunMetrics.steps`` records every action with its batch shape and that time.
        """
        # workers keep the layout the previous call ended in: a resharding replica left in decode starts
        # with a transition to prefill (else its prefill would run on the decode layout's program)
        scheds = [self._scheduler(eos_ids, ph) for ph in (self._phases or ["prefill"] * self.dp)]
        for i, seq in enumerate(sequences):
            scheds[i % self.dp].add(seq)
        if on_finished:  # refused at admission (e.g. a prompt the host buffer cannot hold)
            for sched in scheds:
                for seq in sched.finished:
                    on_finished(seq)
        m = RunMetrics(requests=len(sequences), prompt_tokens=sum(len(s.prompt) for s in sequences))
        phase_s = [{"prefill": 0.0, "decode": 0.0, "transition": 0.0} for _ in scheds]
        inflight: list[deque] = [deque() for _ in scheds]  # (action, issue time) per replica, oldest first
        mark = [0.0] * self.dp  # replica r's last completion (or the moment it became busy)
        replies: list[list] = [[] for _ in scheds]  # transition replies gathered for the oldest action
        start = time.perf_counter()
        while True:
            for r, sched in enumerate(scheds):
                while True:
                    act = sched.next_action()
                    if act.kind in ("done", "wait"):
                        break
                    self._issue(r, act)
                    now = time.perf_counter()
                    idle = not inflight[r]
                    if idle:
                        mark[r] = now
                    inflight[r].append((act, now, idle))
            if not any(inflight):
                break
            kind, rank, payload = self._next_reply()
            r = rank // self.replica
            act, issued, after_idle = inflight[r][0]
            if kind == "transition":
                replies[r].append(payload["seconds"])
                if len(replies[r]) < self.replica:
                    continue
                replies[r] = []
                m.transitions += 1 if r == 0 else 0
                scheds[r].on_transition_done()
            else:
                tokens = {}
                for seq_ids, toks, logits in payload:
                    tokens.update(zip(seq_ids, toks))
                    if logits is not None and self.keep_logits:
                        for i, sid in enumerate(seq_ids):
                            self.logits.setdefault(sid, []).append(logits[i])
                before = len(scheds[r].finished)
                scheds[r].on_tokens(act, tokens)
                if on_finished:
                    for seq in scheds[r].finished[before:]:
                        on_finished(seq)
                if on_progress:
                    on_progress(act.kind, sum(len(s.finished) for s in scheds), len(tokens))
            inflight[r].popleft()
            now = time.perf_counter()
            phase_s[r][act.kind] += now - mark[r]
            m.steps.append(self._step_record(r, act, now - mark[r], now - issued, now - start, after_idle))
            mark[r] = now
        m.wall_s = time.perf_counter() - start
        self._phases = [s.phase for s in scheds]
        m.output_tokens = sum(len(s.output) for s in sequences)
        for key in ("prefill", "decode", "transition"):
            setattr(m, f"{key}_s", max(p[key] for p in phase_s))
        m.per_replica = phase_s
        self._send(range(self.world), ("stats",))
        for _ in range(self.world):
            st = self._expect(None, "stats")
            m.kv_swap_out_bytes += st["kv_swap_out_bytes"]
            m.kv_swap_in_bytes += st["kv_swap_in_bytes"]
            m.transition_bytes += st["transition_bytes"]
            m.op_times += st.get("op_times", [])  # this call's forward passes; the worker clears its list
        return sequences, m

    def _issue(self, r: int, act) -> None:
        """Send replica ``r``'s ranks the commands of one action."""
        ranks = self.replica_ranks(r)
        if act.kind == "transition":
            self._send(ranks, ("transition", act.target))
            return
        off = r * self.buffer_tokens  # replica r owns buffer tokens [off, off + buffer_tokens)
        if act.swap_in:
            self._send(ranks, ("swap_in", [(b + off, n, sl) for b, n, sl in act.swap_in]))
        for mb in act.micro_batches:
            if off and mb.buffer_starts is not None:
                mb.buffer_starts = [b + off for b in mb.buffer_starts]
            mb.return_logits = self.keep_logits
        self._send(ranks, ("forward", act.micro_batches))

    def _step_record(self, r: int, act, service_s: float, latency_s: float, end_s: float, after_idle: bool) -> dict:
        """One line of ``RunMetrics.steps``: what ran and how long it took (seconds). ``service_s`` is the
        time charged to the action (since the replica's previous completion, or since it became busy when
        ``after_idle``: then it includes the pipeline fill); ``latency_s`` from issue to reply."""
        rec = {"replica": r, "kind": act.kind, "service_s": service_s, "latency_s": latency_s, "end_s": end_s,
               "after_idle": after_idle}
        if act.kind == "transition":
            rec["target"] = act.target
        else:
            mb = act.micro_batches[0]
            rec.update(seqs=len(mb.seq_ids), tokens=mb.num_tokens, context_lens=list(mb.context_lens),
                       swap_in_tokens=sum(n for _, n, _ in act.swap_in))
        return rec

    def _next_reply(self) -> tuple:
        """Next "tokens" or "transition" reply ``(kind, rank, payload)`` (others are kept for later)."""
        for i, msg in enumerate(self._pending):
            if msg[0] in ("tokens", "transition"):
                return self._pending.pop(i)
        while True:
            msg = self._get()
            if msg[0] in ("tokens", "transition"):
                return msg
            self._pending.append(msg)

    def _expect(self, replica: int | None, kind: str):
        """Next message of ``kind`` (from a rank of ``replica`` when given); others are kept for later."""
        pending = self._pending
        for i, msg in enumerate(pending):
            if msg[0] == kind and (replica is None or msg[1] in self.replica_ranks(replica)):
                return pending.pop(i)[2]
        while True:
            msg = self._get()
            if msg[0] == kind and (replica is None or msg[1] in self.replica_ranks(replica)):
                return msg[2]
            pending.append(msg)

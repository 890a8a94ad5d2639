"""How the scheduler reaches the workers.

- :class:`LocalWorkers`: one spawned process per rank on this machine, commands and replies through
  ``torch.multiprocessing`` queues (the default of ``seesaw-run``).
- :class:`CollectiveWorkers`: under ``torchrun`` (one or many nodes) the scheduler lives in global rank
  0, which is also worker 0; each round of commands is broadcast with ``broadcast_object_list`` and the
  replies come back with ``gather_object`` over a gloo control group (torch.distributed, no transport of
  our own).

Both expose ``ready`` (rank -> start-up info), ``send(ranks, cmd)``, ``get() -> reply`` and ``close()``.
"""
from __future__ import annotations

import queue
import signal
import threading
import time
from collections import deque

import torch.distributed as dist
import torch.multiprocessing as mp

from seesaw.runtime.worker import Worker, WorkerConfig, worker_main


class WorkerError(RuntimeError):
    """A worker failed or died; ``rank`` names it. The message is one line (first line, shortened)."""

    def __init__(self, rank: int, message: str) -> None:
        self.rank = rank
        line = message.strip().splitlines()[0] if message.strip() else "failed"
        super().__init__(f"rank {rank}: {line[:300]}{'...' if len(line) > 300 else ''}")


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


class LocalWorkers:
    """Spawn ``cfg.world_size`` worker processes and wait until each has loaded its shards.

    The workers start with SIGINT blocked (inherited, so from their first import on): a terminal's Ctrl-C
    reaches the whole process group, and a worker that stopped on its own could leave its peers blocked in
    a collective. The scheduler's process handles Ctrl-C and stops every worker (:meth:`close`).
    """

    def __init__(self, cfg: WorkerConfig, start_timeout_s: float = 600.0) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(cfg.world_size)]
        self.procs = [ctx.Process(target=worker_main, args=(r, cfg, self.commands[r], self.results), daemon=True)
                      for r in range(cfg.world_size)]
        self.ready: dict[int, dict] = {}
        try:
            self._start()
            while len(self.ready) < cfg.world_size:
                msg = self.get(start_timeout_s)
                if msg[0] == "ready":
                    self.ready[msg[1]] = msg[2]
        except BaseException:
            self.close(0.5)
            raise

    def _start(self) -> None:
        """Start the worker processes with SIGINT blocked in this thread: each worker inherits the blocked mask (a
        Ctrl-C stays pending there, never delivered). A Ctrl-C meanwhile is held, not acted on, until every
        ``start()`` has returned (one interrupted half-way would leave a running process this object does not
        know of), then raised as KeyboardInterrupt; ignoring it instead would lose the user's Ctrl-C. The hold
        is a Python handler because another thread may take the signal and interrupt this one at once."""
        held: list[int] = []
        main = threading.current_thread() is threading.main_thread()  # only it may set handlers (and gets them)
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum)) if main else None
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for p in self.procs:
                p.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            if main:
                signal.signal(signal.SIGINT, previous)
        if held:
            raise KeyboardInterrupt

    def send(self, ranks, cmd) -> None:
        for r in ranks:
            self.commands[r].put(cmd)

    def get(self, timeout_s: float = 3600.0):
        """Next reply; raises :class:`WorkerError` naming the rank when a worker failed or died."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                msg = self.results.get(timeout=0.2)
            except queue.Empty:
                for rank, p in enumerate(self.procs):
                    if p.exitcode is not None and p.exitcode != 0:
                        self._raise_reported_error()
                        raise WorkerError(rank, f"worker process died ({_exit_text(p.exitcode)})")
                if time.monotonic() > deadline:
                    raise WorkerError(-1, f"no answer from the workers within {timeout_s:g} s")
                continue
            if msg[0] == "error":
                self._raise_dead_rank(exclude=msg[1], then=f"rank {msg[1]} then failed: {msg[2]}")
                raise WorkerError(msg[1], msg[2])
            return msg

    def _raise_dead_rank(self, exclude: int, then: str) -> None:
        """When a peer's death made another rank's collective fail, name the rank that died."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for rank, p in enumerate(self.procs):
                if rank != exclude and p.exitcode not in (None, 0):
                    raise WorkerError(rank, f"worker process died ({_exit_text(p.exitcode)}); {then}")
            time.sleep(0.05)

    def _raise_reported_error(self) -> None:
        """A dead worker may have reported why just before exiting: surface that message."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                msg = self.results.get(timeout=0.1)
            except queue.Empty:
                continue
            if msg[0] == "error":
                raise WorkerError(msg[1], msg[2])

    def close(self, wait_s: float = 5.0) -> None:
        """Ask every worker to stop; terminate, then kill, those still alive after ``wait_s`` seconds.
        Commands a dead or stopped worker never read are dropped (this process must not wait at exit to
        flush them)."""
        for q in self.commands:
            try:
                q.put(("stop",))
                q.cancel_join_thread()
            except Exception:  # noqa: BLE001 (a broken queue must not stop the clean-up)
                pass
        started = [p for p in self.procs if p.pid is not None]  # an interrupted start may leave some unstarted
        deadline = time.monotonic() + wait_s
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in started:
            if p.is_alive():
                p.terminate()
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(1)


class CollectiveWorkers:
    """Rank 0's view of a torchrun job: commands are batched per round, broadcast, executed by every rank
    (rank 0 runs its own share through ``local``), and the replies gathered back to rank 0."""

    def __init__(self, local: Worker, control_group) -> None:
        self.local = local
        self.group = control_group
        self.world = dist.get_world_size()
        self.round: list[list[tuple]] = [[] for _ in range(self.world)]
        self.replies: deque = deque()
        info = [None] * self.world
        dist.gather_object(local.startup_info, info, dst=0, group=control_group)
        self.ready = dict(enumerate(info))

    def send(self, ranks, cmd) -> None:
        for r in ranks:
            self.round[r].append(cmd)

    def get(self, timeout_s: float = 3600.0):
        if not self.replies:
            self._flush()
        if not self.replies:
            raise WorkerError(-1, "no reply expected from this round")
        return self.replies.popleft()

    def _flush(self) -> None:
        batch = [self.round]
        self.round = [[] for _ in range(self.world)]
        dist.broadcast_object_list(batch, src=0, group=self.group)
        mine = run_round(self.local, batch[0][0])
        gathered = [None] * self.world
        dist.gather_object(mine, gathered, dst=0, group=self.group)
        for rank, replies in enumerate(gathered):
            for reply in replies:
                if reply[0] == "error":
                    raise WorkerError(rank, reply[2])
                self.replies.append(reply)

    def close(self, wait_s: float = 5.0) -> None:  # noqa: ARG002 (every rank returns after the stop round)
        """Broadcast the stop round: every rank returns from :func:`serve_collective`."""
        stop = [[[("stop",)] for _ in range(self.world)]]
        dist.broadcast_object_list(stop, src=0, group=self.group)


def run_round(worker: Worker, commands: list[tuple]) -> list[tuple]:
    """Execute one rank's commands of a round; failures become an ``error`` reply."""
    replies = []
    for cmd in commands:
        try:
            reply = worker.handle(cmd)
        except Exception as e:  # noqa: BLE001 (reported to rank 0, which names this rank)
            return replies + [("error", worker.rank, f"{type(e).__name__}: {e}")]
        if reply is not None:
            replies.append(reply)
    return replies


def serve_collective(worker: Worker, control_group) -> None:
    """Ranks other than 0 under torchrun: execute broadcast rounds until told to stop."""
    dist.gather_object(worker.startup_info, None, dst=0, group=control_group)
    while True:
        batch = [None]
        dist.broadcast_object_list(batch, src=0, group=control_group)
        mine = batch[0][worker.rank]
        if mine and mine[0][0] == "stop":
            return
        dist.gather_object(run_round(worker, mine), None, dst=0, group=control_group)

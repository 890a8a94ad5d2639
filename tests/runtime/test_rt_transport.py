"""The launcher's workers: a Ctrl-C that arrives while the workers are being started is not lost."""
from __future__ import annotations

import signal
import threading
from types import SimpleNamespace

import pytest
import torch.multiprocessing as mp

from seesaw.runtime import transport


def test_ctrl_c_while_starting_the_workers_stops_the_launcher_and_every_worker(monkeypatch):
    """SIGINT lands while the workers are spawned (as a terminal's Ctrl-C can): the workers inherit it blocked
    (never delivered to them), and the launcher gets it as soon as the start is over, stops the started workers
    and raises KeyboardInterrupt (an ignored SIGINT there would let the run go on)."""
    process = mp.get_context("spawn").Process
    real_start, started = process.start, []

    def start(self):
        # the Ctrl-C arrives mid-start, at the launching thread (a process-directed signal may reach another
        # thread instead, whose handler interrupts the main thread at once: the same clean-up handles it)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        real_start(self)
        with open(f"/proc/{self.pid}/status") as f:  # the worker is still importing torch: alive
            blocked = int(next(ln for ln in f if ln.startswith("SigBlk")).split()[1], 16)
        started.append((self, blocked))

    monkeypatch.setattr(process, "start", start)
    with pytest.raises(KeyboardInterrupt):
        transport.LocalWorkers(SimpleNamespace(world_size=2), start_timeout_s=60)
    assert len(started) == 2
    assert all(blocked & (1 << (signal.SIGINT - 1)) for _, blocked in started)  # SIGINT blocked in each worker
    assert not any(p.is_alive() for p, _ in started)

"""The validation runs' drift probe: a machine slower than its profile is said to be busy."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from seesaw.experiments import validation_runs
from seesaw.ir import load_model_config
from seesaw.planner.hardware import get_gpu


@pytest.mark.parametrize("slowdown, busy", [(1.0, False), (0.9, False), (0.5, True)])
def test_drift_note_says_busy_when_a_probe_runs_far_below_the_profile(monkeypatch, slowdown, busy):
    """The probes are faked at the profile's own rates times ``slowdown``: at half speed the note says BUSY."""
    gpu = get_gpu("cpu")
    from seesaw.planner.cost.roofline import kernel_time_s

    class FakeBench:
        def __init__(self, *a, **k):
            pass

        def stream(self, rows=1):
            nbytes, flops = 128e6, 2 * rows * 64e6
            t = (nbytes / (gpu.memory_gb_per_s * 1e9) if rows == 1
                 else kernel_time_s(flops, nbytes, gpu, rows)) / slowdown
            return SimpleNamespace(nbytes=nbytes, seconds=t, flops=flops, rows=rows)

        def peak(self):
            return SimpleNamespace(flops=1e9, seconds=1e9 / gpu.peak_flops / slowdown)

    import seesaw.runtime.microbench as mb
    monkeypatch.setattr(mb, "Bench", FakeBench)
    drift, note = validation_runs.machine_drift(load_model_config("SmolLM2-135M"), gpu)
    assert drift["busy"] is busy and drift["slowest_rate"] == pytest.approx(slowdown, rel=1e-6)
    assert ("BUSY" in note) is busy and "load average" in note

"""The linear fits of seesaw-calibrate (planner/calibration/fit_links.py): collectives, host copies and the
per-micro-batch overhead, recovered from synthetic timings with known parameters."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.fit_truth import MiB, NOISE, TRUTH, _noise, synthetic_comm_samples, synthetic_step_samples
from seesaw.ir.errors import InputError
from seesaw.planner.hardware import build_cluster
from seesaw.planner.calibration.fit_links import fit_comm, fit_copy, fit_step
from seesaw.planner.calibration.fit import CopySample, StepSample


def test_comm_fit_recovers_alpha_beta_within_2_percent():
    fit = fit_comm(synthetic_comm_samples(TRUTH))
    assert fit.params.collective_launch_us == pytest.approx(30, rel=0.02)
    assert fit.params.link_latency_us == pytest.approx(60, rel=0.02)
    assert fit.params.link_gb_per_s == pytest.approx(1.5, rel=0.02)
    assert {r.group for r in fit.residuals} == {"all_reduce", "send_recv"}
    assert max(abs(r.error) for r in fit.residuals) < 6 * NOISE


def test_comm_fit_at_one_world_size_holds_the_launch_at_0():
    samples = [s for s in synthetic_comm_samples(TRUTH) if s.world == 2]
    fit = fit_comm(samples)
    assert fit.free == ("link_latency_us", "link_gb_per_s") and fit.params.collective_launch_us == 0
    assert fit.params.link_latency_us == pytest.approx(30 + 60, rel=0.02)  # launch + one hop
    assert fit.params.link_gb_per_s == pytest.approx(1.5, rel=0.02)
    assert "collective_launch_us" not in fit.stderr


def test_copy_fit_recovers_bandwidth_within_2_percent():
    rng = np.random.default_rng(2)
    cluster = build_cluster(TRUTH, 1, "test", "test")
    samples = [CopySample("pinned", n, cluster.host_to_device_s(n) * _noise(rng)) for n in (MiB, 16 * MiB, 256 * MiB)]
    fit = fit_copy(samples)
    assert fit.kind == "pinned" and fit.host_link_gb_per_s == pytest.approx(12, rel=0.02)
    assert [r.group for r in fit.residuals] == ["copy pinned"] * 3



def test_step_fit_recovers_a_constant_overhead_within_2_percent():
    fit = fit_step(synthetic_step_samples(300.0, {"decode": 0.0, "prefill": 0.0}))
    assert fit.step_overhead_us == pytest.approx(300, rel=0.02)
    assert fit.setup_us == pytest.approx(120, rel=0.02)
    assert fit.slope_clear == {"decode": False, "prefill": False}
    assert [r.group for r in fit.residuals] == ["step"] * 6
    assert max(abs(r.error) for r in fit.residuals) < 6 * NOISE


def test_step_fit_takes_a_clear_per_sequence_slope_out_of_the_constant():
    fit = fit_step(synthetic_step_samples(300.0, {"decode": 20.0, "prefill": 80.0}))
    assert fit.step_overhead_us == pytest.approx(300, rel=0.02)
    assert fit.slope_clear == {"decode": True, "prefill": True}
    assert fit.slope_us_per_seq["decode"] == pytest.approx(20, rel=0.02)
    assert fit.slope_us_per_seq["prefill"] == pytest.approx(80, rel=0.02)
    # the cost model has only the constant: the 32-sequence batches are under-predicted
    worst = min(fit.residuals, key=lambda r: r.error)
    assert worst.label == "prefill 32" and worst.error == pytest.approx(300 / (300 + 80 * 32) - 1, rel=0.02)


def test_step_fit_without_samples_raises():
    with pytest.raises(InputError) as info:
        fit_step([])
    assert info.value.field == "step samples"
    with pytest.raises(InputError, match="non-positive"):
        fit_step([StepSample("decode", 1, 1, 0.0)])

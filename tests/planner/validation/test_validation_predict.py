"""Step replay of seesaw-validate (planner/validation/predict.py): the pipeline recurrence by hand and the
per-step cost-model terms."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.validation.predict import (PhaseShape, pipeline_service_s, replay_steps_s, stage_times_s,
                                               swap_in_s)
from seesaw.planner.workload import Workload


def test_pipeline_recurrence_by_hand():
    # two stages, window 2: step 0 fills (0-1 on s0, 1-2 on s1); step 1 runs 1-3 on s0 and 3-5 on s1;
    # step 2 is issued when step 0 returns (t=2), waits for s0 until 3, runs 3-4 and on s1 5-6.
    out = pipeline_service_s([[1, 1], [2, 2], [1, 1]], [True, False, False], window=2)
    assert out == pytest.approx([2, 3, 1])
    assert sum(out) == pytest.approx(6)  # the makespan
    # window 1: no overlap at all, every step pays its whole latency
    assert pipeline_service_s([[1, 1], [2, 2]], [True, False], window=1) == pytest.approx([2, 4])
    # an idle gap restarts the fill
    assert pipeline_service_s([[1, 1], [1, 1]], [True, True], window=2) == pytest.approx([2, 2])
    # one stage: each step is its own time
    assert pipeline_service_s([[3], [1]], [True, False], window=1) == pytest.approx([3, 1])


@pytest.fixture(scope="module")
def cost():
    cfg = load_model_config("SmolLM2-135M")
    return CostModel(cfg, load_cluster("2xcpu"), Workload("w", [100], [10]))


def test_replay_charges_the_fill_once_and_adds_swap_in(cost):
    pp2 = PhaseShape(Layout(1, 1, 2), (15, 15))
    phases = {"prefill": pp2, "decode": pp2}
    a = stage_times_s(cost, pp2, "prefill", [200, 100])
    b = stage_times_s(cost, pp2, "prefill", [300])
    recs = [{"kind": "prefill", "replica": 0, "context_lens": [200, 100], "after_idle": True},
            {"kind": "prefill", "replica": 0, "context_lens": [300], "after_idle": False}]
    out = replay_steps_s(cost, phases, recs)
    assert out[0] == pytest.approx(sum(a))
    assert sum(out) == pytest.approx(max(a[0] + b[0], a[0] + a[1]) + b[1])
    dec = [{"kind": "decode", "replica": 0, "context_lens": [301], "after_idle": True, "swap_in_tokens": 300}]
    base = sum(stage_times_s(cost, pp2, "decode", [301]))
    assert replay_steps_s(cost, phases, dec)[0] == pytest.approx(base + swap_in_s(cost, pp2, 300))
    assert swap_in_s(cost, pp2, 300) > 0 and swap_in_s(cost, pp2, 0) == 0

"""The simulator's per-batch stage times equal the closed form's stage-cost terms for the same batch."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.ir.layout import Layout
from seesaw.ir.ops import PassShape
from seesaw.planner.cost.model import NS, CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.simulate.step_time import AttentionLoad, StepTimes
from seesaw.planner.workload import Workload

CASES = [("llama-2-70b", "8xA10", "tp2pp4", (18, 22, 20, 20)), ("llama-3-8b", "2xH100-SXM", "tp2", (32,)),
         ("SmolLM2-135M", "2xcpu", "pp2", (14, 16))]


def _closed(cost, layout, counts, parts):
    st = cost.stage_cost(layout, parts)
    return [st.stage_ns(s, n) / NS for s, n in enumerate(counts)]


@pytest.mark.parametrize("model, cluster, layout, counts", CASES)
@pytest.mark.parametrize("seqs, ctx", [(1, 17), (7, 300), (64, 1200), (300, 2000)])
def test_decode_batch_matches_the_stage_cost(model, cluster, layout, counts, seqs, ctx):
    cost = CostModel(load_model_config(model), load_cluster(cluster), Workload("w", (8,), (8,)))
    lay = Layout.parse(layout)
    got = StepTimes(cost, lay, counts).stage_times(seqs, seqs, [AttentionLoad.decode(seqs, seqs * ctx)])
    want = _closed(cost, lay, counts, (PassShape(seqs, 1, ctx),))
    assert got == pytest.approx(want, rel=0.01, abs=2e-9)


@pytest.mark.parametrize("model, cluster, layout, counts", CASES)
@pytest.mark.parametrize("n, length", [(1, 5), (3, 200), (16, 512), (4, 4000)])
def test_prefill_and_chunk_batches_match_the_stage_cost(model, cluster, layout, counts, n, length):
    """Whole prompts of equal length, and one chunk of a longer prompt beside decode sequences."""
    cost = CostModel(load_model_config(model), load_cluster(cluster), Workload("w", (8,), (8,)))
    lay = Layout.parse(layout)
    st = StepTimes(cost, lay, counts)
    got = st.stage_times(n * length, n, [AttentionLoad.prompts(n, n * length, n * length * length)])
    assert got == pytest.approx(_closed(cost, lay, counts, (PassShape(n, length, length),)), rel=0.01)
    chunk = AttentionLoad.chunk(length, 3 * length)
    got = st.stage_times(n + length, n + 1, [AttentionLoad.decode(n, n * 700), chunk])
    want = _closed(cost, lay, counts, (PassShape(n, 1, 700), PassShape(1, length, 3 * length)))
    assert got == pytest.approx(want, rel=0.01)


def test_stage_count_must_match_pp():
    cost = CostModel(load_model_config("llama-3-8b"), load_cluster("2xA10"), Workload("w", (8,), (8,)))
    with pytest.raises(ValueError, match="2 stage sizes for pp=1"):
        StepTimes(cost, Layout.parse("tp2"), (16, 16))

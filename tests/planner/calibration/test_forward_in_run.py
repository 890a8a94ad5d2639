"""Tests for seesaw.planner.calibration.forward.in_run_op_samples: instruction timings inside the runtime's
forward passes -> op samples of the IR ops they ran."""
from __future__ import annotations

import pytest

from seesaw.ir import load_model_config
from seesaw.planner.calibration.forward import forward_graph, forward_ops, in_run_op_samples
from seesaw.planner.validation.predict import step_parts

CFG = load_model_config("SmolLM2-135M")


def _record(graph, mode, context_lens, rank=0):
    """A pass timing every op of every layer at 1 ms x (layer + 1), plus a sampling instruction."""
    ops = graph.pre_ops() + [op for i in range(CFG.num_hidden_layers) for op in graph.layer_ops(i)] + graph.post_ops()
    timed = [[op.name, 1e-3 * ((op.layer or 0) + 1)] for op in ops] + [["sample", 5e-3]]
    return {"rank": rank, "mode": mode, "context_lens": context_lens, "ops": timed}


def test_each_compute_op_becomes_one_sample_at_its_mean_time_over_the_layers():
    graph = forward_graph(CFG)
    samples = in_run_op_samples(graph, [_record(graph, "decode", [10, 300])], 4)
    ops, _, _, _ = forward_ops(graph, step_parts("decode", [10, 300]), 4)
    by_label = {s.label.rsplit(" ", 1)[-1]: s for s in samples}
    assert set(by_label) == {op.label for op in ops}  # no "sample": not an IR compute op
    mean_layer_s = 1e-3 * (CFG.num_hidden_layers + 1) / 2
    for op in ops:
        s = by_label[op.label]
        assert (s.kind, s.flops, s.nbytes, s.rows, s.seqs) == (op.kind, op.flops, op.nbytes, op.rows, op.seqs)
        outside_layers = op.label in ("embed_tokens", "norm", "lm_head")  # timed once, at 1 ms
        assert s.seconds == pytest.approx(1e-3 if outside_layers else mean_layer_s), op.label
        assert s.in_run and s.label.startswith("in-run decode 2 seqs ")


def test_tp_and_prefill_shapes_follow_forward_ops():
    graph = forward_graph(CFG, 3)
    samples = in_run_op_samples(graph, [_record(graph, "prefill", [7, 40])], 4, tp=3)
    ops, _, _, _ = forward_ops(graph, step_parts("prefill", [7, 40]), 4, 3)
    assert sorted((s.kind, s.flops, s.nbytes) for s in samples) == sorted((o.kind, o.flops, o.nbytes) for o in ops)
    with pytest.raises(ValueError, match="split for tp 3"):
        in_run_op_samples(graph, [], 4, tp=1)


def test_per_pass_keeps_every_nth_pass_of_each_rank_and_mode():
    graph = forward_graph(CFG)
    records = [_record(graph, mode, [5 + i], rank) for rank in (0, 1) for mode in ("prefill", "decode")
               for i in range(5)]
    per_pass = {label: len(in_run_op_samples(graph, records, 4, per_pass=n)) for label, n in (("all", 0), ("2", 2))}
    ops_per_pass = len(in_run_op_samples(graph, records[:1], 4))
    assert per_pass["all"] == 20 * ops_per_pass
    assert per_pass["2"] == 4 * 3 * ops_per_pass  # passes 0, 2, 4 of each of the 4 (rank, mode) series


def test_a_record_of_another_mode_is_an_error():
    graph = forward_graph(CFG)
    with pytest.raises(ValueError, match="mode prefill or decode"):
        in_run_op_samples(graph, [_record(graph, "transition", [5])], 4)

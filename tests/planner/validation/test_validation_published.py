"""Published measurements: the data file's rows, their predictions, errors and same-machine rankings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from seesaw.ir.errors import InputError
from seesaw.planner.validation.published import (RunPrediction, engine_model, load_published, mape, predict_run,
                                                 rankings)

DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "published.jsonl"


@pytest.fixture(scope="module")
def rows():
    return load_published(DATA)


def test_every_row_has_a_source_and_a_verbatim_quote_holding_its_value(rows):
    assert len(rows) >= 30
    for r in rows:
        assert r.source.strip() and r.quote.strip()
        quote = r.quote.replace(",", "")
        shown = {f"{r.value}", f"{r.value:.0f}", f"{r.value:.1f}", f"{r.value:.2f}", f"{r.value:.3f}", f"{r.value:.4f}"}
        assert any(s in quote for s in shown), r.id
        assert r.tp * r.pp * r.dp == r.num_gpus and r.tp % r.ep == 0


def test_expert_parallel_rows_compare_with_tp_on_the_same_machine(rows):
    """vLLM's --enable-expert-parallel rows (ep = tp) sit in a group with the TP-only run of the same GPUs."""
    ep_rows = [r for r in rows if r.ep > 1]
    assert ep_rows and all(r.ep == r.tp for r in ep_rows)
    grouped = [r for r in ep_rows if r.group]
    assert grouped and all(any(o.group == r.group and o.ep == 1 and o.tp == r.tp for o in rows) for r in grouped)


def test_rows_cover_pcie_nvlink_and_same_machine_layout_comparisons(rows):
    assert {"pcie", "nvlink"} <= {r.interconnect for r in rows}
    groups: dict[str, set] = {}
    for r in rows:
        if r.group:
            groups.setdefault(r.group, set()).add((r.num_gpus, r.tp, r.pp))
    assert sum(len(v) >= 2 for v in groups.values()) >= 5


@pytest.mark.parametrize("engine, version, model", [
    ("vllm", "0.2.7", "vllm-v0"), ("vllm", "main @ 2024-08-04 (~0.5.3.post1/0.5.4 dev)", "vllm-v0"),
    ("vllm", "0.6.6", "vllm-v0.6"), ("vllm", "0.11.0", "vllm-v1-sync"), ("vllm", "0.14.1", "vllm"),
    ("sglang", "0.3.0", "vllm-v1-sync"), ("sglang", "0.5.2", "vllm"), ("vllm", "1.0.0", "vllm"),
    ("sglang", "srt (early 2024, version not stated)", "vllm-v1-sync"),
    ("trtllm", "0.14.0", "trtllm")])
def test_engine_model_follows_the_version(engine, version, model):
    assert engine_model(engine, version) == model


def test_a_small_row_is_predicted_by_both_methods(rows):
    row = next(r for r in rows if r.id == "trt014-l31-8b-2048-128-a100sxm")
    p = predict_run(row)
    assert p.closed_form > 0 and p.simulated > 0
    assert abs(p.error("simulated")) < 0.5 and "max_num_seqs" in p.knobs


def test_rankings_and_mape_from_predictions(rows):
    a, b, c = (r for r in rows if r.group == "trt014-llama31-70b-1000-1000-a100sxm")
    preds = [RunPrediction(a, a.value * 1.1, a.value), RunPrediction(b, b.value * 1.1, b.value * 0.9),
             RunPrediction(c, c.value * 1.1, None)]
    assert mape(preds, "closed_form") == pytest.approx(0.1) and mape(preds, "simulated") == pytest.approx(0.05)
    assert rankings(preds) == []  # a run without a prediction leaves its group out
    preds[2] = RunPrediction(c, c.value * 1.1, c.value)
    (g,) = rankings(preds)
    assert g.same_order("closed_form") and g.same_order("simulated")


def test_a_bad_row_names_the_file_line_and_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = json.loads(DATA.read_text().splitlines()[0])
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "metric": "tokens"}) + "\n")
    with pytest.raises(InputError) as e:
        load_published(path)
    assert e.value.source == str(path) and e.value.field == "line 2: metric"

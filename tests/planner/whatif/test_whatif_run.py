import csv
import math

import pytest

from seesaw.ir import load_model_config
from seesaw.planner.hardware import load_cluster
from seesaw.planner.whatif.plots import write_plots
from seesaw.planner.whatif.run import COLUMNS, run_whatif, write_csv
from seesaw.planner.whatif.sweep import parse_sweep
from seesaw.planner.workload import load_workload


@pytest.fixture(scope="module")
def rows():
    cfg = load_model_config("llama-2-7b")
    clusters = [("8xA10", load_cluster("8xA10"))]
    sweeps = [parse_sweep("gpu_link_gb_per_s=0.5x:4x", points=3)]
    calls = []
    out = run_whatif(cfg, clusters, load_workload("random:512:128:200"), sweeps, {"8xA10": 1.5},
                     on_point=lambda d, n: calls.append((d, n)))
    assert calls[-1] == (4, 4)  # base + 3 points
    return out


def test_csv_rows_and_columns(rows, tmp_path):
    path = tmp_path / "results.csv"
    write_csv(rows, path)
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == COLUMNS
    points = {(r["sweep_field"], r["sweep_value"]) for r in got}
    assert len(points) == 4
    systems = {r["system"] for r in got}
    assert "seesaw" in systems and {"pp8", "dp8", "dp2tp4"} <= systems
    for p in points:  # one row per point and system
        at = [r["system"] for r in got if (r["sweep_field"], r["sweep_value"]) == p]
        assert sorted(at) == sorted(systems) and len(set(at)) == len(at)
        seesaw = next(float(r["tokens_per_s"]) for r in got if (r["sweep_field"], r["sweep_value"]) == p
                      and r["system"] == "seesaw")
        statics = [float(r["tokens_per_s"]) for r in got if (r["sweep_field"], r["sweep_value"]) == p
                   and r["system"] != "seesaw" and r["feasible"] == "True"]
        assert seesaw >= max(statics) * (1 - 1e-6)
        assert sum(r["is_best_static"] == "True" for r in got if (r["sweep_field"], r["sweep_value"]) == p) == 1


def test_cost_and_breakdown_consistent(rows):
    for r in rows:
        if not r.feasible:
            continue
        assert r.total_s == pytest.approx(r.prefill_s + r.decode_s + r.transition_s + r.kv_swap_s)
        assert r.usd_per_m_output_tokens == pytest.approx(1.5 * 8 / 3600 / r.output_tokens_per_s * 1e6)
        assert 0 < r.memory_gb_per_gpu <= 24
    vals = sorted({r.sweep_value for r in rows if r.sweep_field == "gpu_link_gb_per_s"})
    base = load_cluster("8xA10").gpu_link_gb_per_s
    assert vals == pytest.approx([0.5 * base, base * math.sqrt(2), 4 * base])


def test_plots_written(rows, tmp_path):
    paths = write_plots(rows, tmp_path, "t")
    names = {p.name for p in paths}
    assert names == {"throughput_vs_gpu_link_gb_per_s.png", "breakdown.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000

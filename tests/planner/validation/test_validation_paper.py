"""The Seesaw paper's cells: the data file and the direction test (planning them is bench/fidelity.py's)."""
from __future__ import annotations

from pathlib import Path

from seesaw.ir.layout import Layout
from seesaw.planner.validation.paper import CellResult, geomean, in_paper_direction, load_cells

DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "seesaw_paper.jsonl"


def test_the_papers_twelve_fig10_cells_and_four_fig11_cells():
    cells = load_cells(DATA)
    fig10 = [c for c in cells if c.figure == "10"]
    assert len(fig10) == 12 and len(cells) == 16
    assert {(c.gpu, c.dataset) for c in fig10} == {(g, d) for g in ("A10", "L4") for d in ("arxiv", "sharegpt")}
    for c in fig10:
        pre, dec = Layout.parse(c.seesaw_prefill), Layout.parse(c.seesaw_decode)
        assert pre.dp * pre.tp * pre.pp == c.num_gpus == (4 if c.seesaw_model == "llama-3-15b" else 8)
        assert in_paper_direction(pre, dec)  # the paper always re-shards toward PP prefill, TP decode
        assert c.quote and c.source
    assert sorted(c.speedup for c in cells if c.figure == "11") == [1.0, 1.13, 1.3, 1.46]


def test_direction_and_same_layout_checks():
    cell = next(c for c in load_cells(DATA) if c.figure == "10")
    pp4, tp4, tp2pp2 = Layout.parse("pp4"), Layout.parse("tp4"), Layout.parse("tp2pp2")
    assert in_paper_direction(pp4, tp4) and in_paper_direction(pp4, tp2pp2)
    assert not in_paper_direction(tp4, pp4) and not in_paper_direction(tp2pp2, tp2pp2)
    r = CellResult(cell, Layout.parse(cell.seesaw_prefill), Layout.parse(cell.seesaw_decode), None, 1.2, 1.1)
    assert r.direction and r.same_layouts and not r.same_static
    assert geomean([2.0, 0.5, float("nan")]) == 1.0

"""Layout parsing and rank maps (ir/layout.py)."""
import pytest

from seesaw.ir import InputError, Layout


@pytest.mark.parametrize("text,expected", [
    ("pp8", Layout(1, 1, 8)), ("tp4pp2", Layout(1, 4, 2)), ("dp2tp4", Layout(2, 4, 1)),
    ("PP2TP4", Layout(1, 4, 2)), ("dp1tp1pp1", Layout()), ("tp8ep8", Layout(1, 8, 1, 8)),
    ("ep2", Layout(1, 2, 1, 2)), ("pp2ep2tp4", Layout(1, 4, 2, 2)),
])
def test_parse(text, expected):
    assert Layout.parse(text) == expected


@pytest.mark.parametrize("text", ["", "tp", "tp4tp2", "tp0", "xx4", "tp-1", "tp4ep8", "tp4ep3", "ep0"])
def test_parse_errors_name_field(text):
    with pytest.raises(InputError) as info:
        Layout.parse(text, field="prefill_layout")
    assert info.value.field == "prefill_layout"


def test_rank_roundtrip_tp_fastest():
    lay = Layout(2, 4, 2)
    assert lay.world_size == 16 and str(lay) == "dp2tp4pp2"
    assert [lay.coords(r) for r in range(3)] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    assert lay.coords(4) == (0, 1, 0) and lay.coords(8) == (1, 0, 0)
    assert all(lay.rank(*lay.coords(r)) == r for r in range(16))


def test_expert_parallel_degree_divides_tp_and_is_named_after_tp():
    lay = Layout(2, 8, 1, 4)
    assert str(lay) == "dp2tp8ep4" and lay.expert_tp == 2 and lay.world_size == 16
    assert Layout.parse(str(lay)) == lay and str(Layout(1, 4, 2)) == "tp4pp2"  # ep 1 is not written
    with pytest.raises(ValueError, match="ep=3 must divide tp=4"):
        Layout(1, 4, 1, 3)

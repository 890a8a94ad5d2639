"""Layout parsing and rank maps (ir/layout.py)."""
import pytest

from seesaw.ir import InputError, Layout


@pytest.mark.parametrize("text,expected", [
    ("pp8", Layout(1, 1, 8)), ("tp4pp2", Layout(1, 4, 2)), ("dp2tp4", Layout(2, 4, 1)),
    ("PP2TP4", Layout(1, 4, 2)), ("dp1tp1pp1", Layout()),
])
def test_parse(text, expected):
    assert Layout.parse(text) == expected


@pytest.mark.parametrize("text", ["", "tp", "tp4tp2", "tp0", "xx4", "tp-1"])
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

import math

import pytest

from seesaw.ir.errors import InputError
from seesaw.planner.hardware import load_cluster
from seesaw.planner.whatif.sweep import apply_point, parse_sweep
from seesaw.planner.workload import load_workload


def test_multiplier_range_is_geometric():
    s = parse_sweep("gpu_link_gb_per_s=0.1x:50x", points=7)
    assert s.relative and len(s.values) == 7
    assert s.values[0] == pytest.approx(0.1) and s.values[-1] == pytest.approx(50)
    ratios = [b / a for a, b in zip(s.values, s.values[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)
    cl = load_cluster("8xA10")
    pts = s.points(cl, load_workload("random:512:128:10"))
    assert pts[0][0] == pytest.approx(0.1 * cl.gpu_link_gb_per_s) and pts[0][1] == pytest.approx(0.1)


def test_absolute_range_is_linear_and_list():
    s = parse_sweep("host_memory_gb=100:400", points=4)
    assert not s.relative and s.values == pytest.approx((100, 200, 300, 400))
    s = parse_sweep("num_gpus=2,4,8")
    assert s.values == (2, 4, 8) and not s.relative
    s = parse_sweep("decode_to_prefill_ratio=0.5x,2x")
    assert s.relative and s.values == (0.5, 2.0)


@pytest.mark.parametrize("text, field", [
    ("gpu_link_gb_per_s", "sweep"), ("bogus=1:2", "bogus"), ("gpu_link_gb_per_s=a:b", "gpu_link_gb_per_s"),
    ("gpu_link_gb_per_s=1x:5", "gpu_link_gb_per_s"), ("host_link_gb_per_s=0:5", "host_link_gb_per_s"),
    ("num_gpus=2.5", "num_gpus"), ("output_len=0", "output_len"), ("host_memory_gb=9:3", "host_memory_gb"),
    ("gpu_link_gb_per_s=1x,2", "gpu_link_gb_per_s"), ("gpu_link_gb_per_s=1:2:3", "gpu_link_gb_per_s"),
    ("gpu_link_gb_per_s=0x:2x", "gpu_link_gb_per_s"), ("decode_to_prefill_ratio=-1", "decode_to_prefill_ratio"),
])
def test_bad_specs_name_the_field(text, field):
    with pytest.raises(InputError) as e:
        parse_sweep(text)
    assert e.value.field == field and "--sweep" in str(e.value)


def test_range_needs_two_points():
    with pytest.raises(InputError):
        parse_sweep("gpu_link_gb_per_s=1:2", points=1)


def test_apply_cluster_and_workload_points():
    cl, wl = load_cluster("8xA10"), load_workload("random:512:128:10")
    c2, w2 = apply_point(parse_sweep("gpu_link_gb_per_s=3"), 3.0, cl, wl)
    assert c2.gpu_link_gb_per_s == 3.0 and w2 is wl and c2.num_gpus == cl.num_gpus
    c2, _ = apply_point(parse_sweep("num_gpus=4"), 4.0, cl, wl)
    assert c2.num_gpus == 4 and isinstance(c2.num_gpus, int)
    with pytest.raises(InputError) as e:  # 12 is not a whole number of 8-GPU nodes
        apply_point(parse_sweep("num_gpus=12"), 12.0, cl, wl)
    assert e.value.field == "num_gpus"
    s = parse_sweep("decode_to_prefill_ratio=0,0.5")
    _, w0 = apply_point(s, 0.0, cl, wl)
    _, w1 = apply_point(s, 0.5, cl, wl)
    assert set(w0.prompt_lens) == {512} and set(w0.output_lens) == {1}  # ratio 0 -> one token
    assert set(w1.output_lens) == {256} and w1.num_requests == 10
    assert math.isclose(s.base_value(cl, wl), 0.25)


def test_a_link_sweep_decides_the_all_reduce_even_where_curves_were_measured():
    """The A10 entry carries measured all-reduce curves, which ignore gpu_link_gb_per_s: before, a link
    sweep predicted the same throughput at 1.7 and 859 GB/s."""
    cl, wl = load_cluster("8xA10"), load_workload("random:512:128:10")
    assert cl.gpu.allreduce_us  # the premise: measured curves
    sweep = parse_sweep("gpu_link_gb_per_s=1,100")
    slow, _ = apply_point(sweep, 1.0, cl, wl)
    fast, _ = apply_point(sweep, 100.0, cl, wl)
    assert slow.allreduce_s(16e6, 4) > 20 * fast.allreduce_s(16e6, 4)
    assert "alpha-beta" in slow.source["gpu_link_gb_per_s"]
    assert cl.gpu.allreduce_us  # the catalog's entry is untouched

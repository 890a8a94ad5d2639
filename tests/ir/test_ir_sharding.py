"""Shard ranges cover every tensor exactly once; TP degree checks."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seesaw.ir import InputError, ShardRule, WeightSpec, check_tp, load_model_config, shard_range
from seesaw.ir import valid_tp_degrees


def coverage(w: WeightSpec, tp: int) -> np.ndarray:
    count = np.zeros(w.shape, dtype=np.int64)
    for r in range(tp):
        rng = shard_range(w, r, tp)
        if rng is None:
            count += 1
            continue
        dim, start, stop = rng
        assert 0 <= start <= stop <= w.shape[dim]
        index = [slice(None)] * len(w.shape)
        index[dim] = slice(start, stop)
        count[tuple(index)] += 1
        assert w.local_shape(tp, r)[dim] == stop - start
    return count


tps = st.sampled_from([1, 2, 3, 4, 6, 8])


@settings(max_examples=60, deadline=None)
@given(tp=tps, rows=st.integers(1, 6), cols=st.integers(1, 6))
def test_column_and_row_cover_once(tp, rows, cols):
    col = WeightSpec("w", (rows * tp, cols), ShardRule.COLUMN, 0)
    row = WeightSpec("w", (rows, cols * tp), ShardRule.ROW, 1)
    assert (coverage(col, tp) == 1).all()
    assert (coverage(row, tp) == 1).all()
    bias = WeightSpec("b", (rows * tp,), ShardRule.COLUMN, 0)
    assert (coverage(bias, tp) == 1).all()


@settings(max_examples=60, deadline=None)
@given(tp=tps, vocab=st.integers(1, 50), hidden=st.integers(1, 4))
def test_vocab_contiguous_ceil_ranges_cover_once(tp, vocab, hidden):
    w = WeightSpec("e", (vocab, hidden), ShardRule.VOCAB, 0)
    assert (coverage(w, tp) == 1).all()
    part = -(-vocab // tp)
    assert shard_range(w, 0, tp) == (0, 0, min(part, vocab))
    starts = [shard_range(w, r, tp)[1] for r in range(tp)]
    assert starts == sorted(starts)


@settings(max_examples=60, deadline=None)
@given(heads=st.sampled_from([1, 2, 4, 8]), tp=st.sampled_from([1, 2, 4, 8, 16]),
       d=st.sampled_from([1, 2, 4]), cols=st.integers(1, 3))
def test_kv_head_slices_whole_heads(heads, tp, d, cols):
    w = WeightSpec("k", (heads * d, cols), ShardRule.KV_HEAD, 0, unit=d)
    count = coverage(w, tp)
    assert (count == max(1, tp // heads)).all()  # exactly once, or tp/heads times when replicated
    for r in range(tp):
        _, start, stop = shard_range(w, r, tp)
        assert start % d == 0 and (stop - start) % d == 0
        if tp > heads:
            assert start // d == r // (tp // heads)  # vLLM: consecutive ranks share a head


def test_replicated_and_row_bias():
    assert shard_range(WeightSpec("n", (64,), ShardRule.REPLICATED), 1, 4) is None
    assert shard_range(WeightSpec("o.bias", (64,), ShardRule.ROW, 0), 3, 4) is None


def test_errors():
    with pytest.raises(InputError) as info:
        shard_range(WeightSpec("w", (10, 4), ShardRule.COLUMN), 0, 4)
    assert info.value.field == "tp" and "w dim 0" in info.value.problem
    with pytest.raises(InputError):
        shard_range(WeightSpec("k", (3 * 8, 4), ShardRule.KV_HEAD, 0, unit=8), 0, 2)
    with pytest.raises(ValueError):
        shard_range(WeightSpec("w", (8, 4), ShardRule.COLUMN), 4, 4)


def test_check_tp_and_valid_degrees():
    smol = load_model_config("SmolLM2-135M")
    assert valid_tp_degrees(smol) == [1, 3]  # DESIGN.md section 7
    check_tp(smol, 3)
    for bad in (2, 9, 0):
        with pytest.raises(InputError) as info:
            check_tp(smol, bad)
        assert info.value.field == "tp" and "valid for SmolLM2-135M: 1, 3" in info.value.problem
    l70 = load_model_config("llama-2-70b")
    check_tp(l70, 16)  # 8 KV heads replicated twice
    assert valid_tp_degrees(l70) == [1, 2, 4, 8, 16, 32, 64]
    assert valid_tp_degrees(load_model_config("qwen2-7b")) == [1, 2, 4]  # 18944 not divisible by 7


def _expert_tensors(cfg, tp, ep):
    from seesaw.ir import build_graph
    from seesaw.ir.passes import apply_tp

    g = apply_tp(build_graph(cfg), tp, ep)
    return [w for op in g.layer_ops(0) for w in op.weights if w.expert is not None]


def test_expert_parallel_tensors_live_in_one_expert_group_and_tile_there():
    """Qwen3-235B-A22B-FP8 at tp8ep2: 128 experts in two groups of 64, each expert (weights and block scales)
    split four ways inside its group; the other group holds an empty slice."""
    from seesaw.ir.sharding import expert_range

    cfg = load_model_config("qwen3-235b-a22b-fp8")
    tensors = _expert_tensors(cfg, 8, 2)
    assert {w.ep for w in tensors} == {2} and len({w.expert for w in tensors}) == 128
    assert [expert_range(128, r, 8, 2) for r in (0, 3, 4, 7)] == [(0, 64), (0, 64), (64, 128), (64, 128)]
    for w in tensors[:: 37]:
        holders = [r for r in range(8) if shard_range(w, r, 8)[2] > shard_range(w, r, 8)[1]]
        assert holders == ([0, 1, 2, 3] if w.expert < 64 else [4, 5, 6, 7])
        assert (coverage(w, 8) == 1).all()  # the group's four slices tile the tensor once
        assert w.local_numel(8, holders[0]) * 4 == w.numel


def test_whole_experts_under_ep_equal_tp():
    cfg = load_model_config("mixtral-8x7b")
    w = next(w for w in _expert_tensors(cfg, 8, 8) if w.expert == 5)
    assert [shard_range(w, r, 8) for r in (5, 4)] == [(w.shard_dim, 0, w.shape[w.shard_dim]), (w.shard_dim, 0, 0)]


def test_expert_parallelism_lifts_the_fp8_block_limit_on_tp():
    from seesaw.ir.sharding import valid_ep_degrees

    cfg = load_model_config("qwen3-235b-a22b-fp8")
    with pytest.raises(InputError) as info:
        check_tp(cfg, 8)
    assert info.value.field == "tp" and "cuts the 128-wide quantization blocks" in info.value.problem
    assert "valid ep with tp=8: 2, 4, 8" in info.value.problem
    check_tp(cfg, 8, 2)
    assert valid_ep_degrees(cfg, 8) == [2, 4, 8] and valid_ep_degrees(cfg, 4) == [1, 2, 4]
    assert 8 in valid_tp_degrees(cfg)
    with pytest.raises(InputError) as info:
        check_tp(load_model_config("mixtral-8x7b"), 8, 16)
    assert info.value.field == "ep"
    with pytest.raises(InputError) as info:
        check_tp(load_model_config("llama-3-8b"), 2, 2)
    assert info.value.field == "ep" and "dense" in info.value.problem

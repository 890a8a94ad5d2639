"""Tests for scripts/build_sharegpt_trace.py's tolerant decoder and length filter (no tokenizer needed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "build_sharegpt_trace.py"
_spec = importlib.util.spec_from_file_location("build_sharegpt_trace", _PATH)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def test_truncated_array_stops_at_incomplete_record():
    text = '[\n {"id": 1, "c": [1, 2]},\n {"id": 2, "c": []},\n {"id": 3, "c": [{"v": "cut mid-str'
    records, complete = build.parse_truncated_array(text)
    assert [r["id"] for r in records] == [1, 2] and complete is False


def test_complete_array():
    assert build.parse_truncated_array(' [ {"a": 1} , {"a": 2} ] ') == ([{"a": 1}, {"a": 2}], True)
    assert build.parse_truncated_array("[]") == ([], True)


def test_not_an_array():
    with pytest.raises(ValueError):
        build.parse_truncated_array('{"a": 1}')


@pytest.mark.parametrize("p, o, ok", [
    (4, 4, True), (3, 100, False), (100, 3, False), (1024, 1024, True), (1025, 4, False), (1000, 1049, False),
])
def test_vllm_length_filter(p, o, ok):
    assert build.keep(p, o) is ok

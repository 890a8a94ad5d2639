"""Tests for seesaw.planner.workload: Workload properties, load_workload specs, errors, the shipped trace."""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from seesaw.ir.errors import InputError
from seesaw.planner.workload import Workload, load_workload, shipped_trace_path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- Workload -------------------------------------------------------------------------------------


def test_properties_and_summary():
    w = Workload("hand", (10, 20, 30), (4, 6, 2))
    assert w.num_requests == 3
    assert w.prompt_tokens == 60 and w.output_tokens == 12
    assert w.mean_prompt_len == pytest.approx(20.0)
    assert w.mean_output_len == pytest.approx(4.0)
    assert (w.max_prompt_len, w.max_output_len, w.max_seq_len) == (30, 6, 32)
    s = w.summary()
    assert s["name"] == "hand" and s["num_requests"] == 3 and s["max_seq_len"] == 32
    assert s["decode_mean_context_len"] == pytest.approx(w.decode_mean_context_len)


def test_decode_mean_context_len_hand_example():
    # request A: p=100, o=10 -> mean context 105 over 10 steps; B: p=10, o=30 -> 25 over 30 steps.
    # time-weighted: (10*105 + 30*25) / 40 = (1050 + 750) / 40 = 45.0
    w = Workload("hand", (100, 10), (10, 30))
    assert w.decode_mean_context_len == pytest.approx(45.0)
    # differs from the plain mean of p + o/2 (= 65.0): long-output requests hold slots longer
    assert w.decode_mean_context_len != pytest.approx(statistics.fmean([105, 25]))


def test_lists_are_stored_as_tuples_and_frozen():
    w = Workload("w", [5, 6], [7, 8])
    assert w.prompt_lens == (5, 6) and w.output_lens == (7, 8)
    with pytest.raises(AttributeError):
        w.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("prompts, outputs, needle", [
    ((), (), "no requests"),
    ((1, 2), (1,), "entries"),
    ((0,), (1,), "prompt_lens[0]"),
    ((1,), (-1,), "output_lens[0]"),
    ((1.5,), (1,), "integer"),
    ((True,), (1,), "integer"),
])
def test_workload_rejects_bad_values(prompts, outputs, needle):
    with pytest.raises(InputError) as exc:
        Workload("bad", prompts, outputs)
    assert needle in str(exc.value) and str(exc.value).startswith("bad: ")


@pytest.mark.parametrize("dp", [1, 2, 3, 7])
def test_split_conserves_requests_and_tokens(dp):
    w = Workload("w", tuple(range(1, 8)), tuple(range(11, 18)))
    parts = w.split(dp)
    assert len(parts) == dp
    assert sum(p.num_requests for p in parts) == w.num_requests
    assert sum(p.prompt_tokens for p in parts) == w.prompt_tokens
    assert sum(p.output_tokens for p in parts) == w.output_tokens
    assert sorted(zip(sum((p.prompt_lens for p in parts), ()), sum((p.output_lens for p in parts), ()))) \
        == sorted(zip(w.prompt_lens, w.output_lens))
    # round-robin: replica r gets requests r, r+dp, ...; sizes differ by at most one
    assert parts[0].prompt_lens == w.prompt_lens[0::dp]
    assert max(p.num_requests for p in parts) - min(p.num_requests for p in parts) <= 1


def test_split_shipped_trace_conserves_tokens():
    w = load_workload("sharegpt")
    parts = w.split(4)
    assert sum(p.prompt_tokens for p in parts) == w.prompt_tokens
    assert sum(p.output_tokens for p in parts) == w.output_tokens


@pytest.mark.parametrize("dp", [0, -1, 4, 2.0])
def test_split_rejects_bad_dp(dp):
    with pytest.raises(InputError, match="dp"):
        Workload("w", (1, 2, 3), (1, 2, 3)).split(dp)


# ---- specs ----------------------------------------------------------------------------------------


def test_sharegpt_all_and_first_n():
    full = load_workload("sharegpt")
    first = load_workload("sharegpt:100")
    assert first.num_requests == 100 and first.name == "sharegpt:100"
    assert first.prompt_lens == full.prompt_lens[:100]
    assert first.output_lens == full.output_lens[:100]
    assert load_workload(" ShareGPT ").num_requests == full.num_requests


def test_random_spec():
    w = load_workload("random:128:64:10")
    assert w.num_requests == 10 and set(w.prompt_lens) == {128} and set(w.output_lens) == {64}
    assert w.decode_mean_context_len == pytest.approx(128 + 32)
    assert load_workload("random:5:7").num_requests == 1000


def test_jsonl_file(tmp_path):
    path = _write(tmp_path, "t.jsonl",
                  '{"prompt_len": 3, "output_len": 4}\n\n   \n{"prompt_len": 5, "output_len": 6, "x": 1}\n')
    w = load_workload(str(path))
    assert w.prompt_lens == (3, 5) and w.output_lens == (4, 6) and w.name == "t"


def test_csv_file_extra_columns_and_blank_lines(tmp_path):
    path = _write(tmp_path, "t.csv", "id, prompt_len ,output_len,note\na,3,4,x\n\nb,5,6,y\n")
    w = load_workload(str(path))
    assert w.prompt_lens == (3, 5) and w.output_lens == (4, 6)


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, field", [
    ("", "workload"),
    ("nonsense", "workload"),
    ("sharegpt:", "N"),
    ("sharegpt:0", "N"),
    ("sharegpt:x", "N"),
    ("sharegpt:99999999", "N"),
    ("random", "workload"),
    ("random:128", "workload"),
    ("random:128:64:10:1", "workload"),
    ("random:0:64", "IN"),
    ("random:128:-1", "OUT"),
    ("random:128:64:0", "N"),
    ("random:a:64", "IN"),
])
def test_bad_spec(spec, field):
    with pytest.raises(InputError) as exc:
        load_workload(spec)
    assert exc.value.source == "--workload" and exc.value.field == field
    assert str(exc.value).startswith(f"--workload: {field}: ")


def test_missing_file(tmp_path):
    for name in ("nope.jsonl", "nope.csv"):
        with pytest.raises(InputError, match="no such file") as exc:
            load_workload(str(tmp_path / name))
        assert exc.value.source == "--workload"


def test_unsupported_existing_file(tmp_path):
    path = _write(tmp_path, "t.txt", "1,2\n")
    with pytest.raises(InputError, match="unsupported file type") as exc:
        load_workload(str(path))
    assert exc.value.source == "--workload"


@pytest.mark.parametrize("body, field, problem", [
    ('{"prompt_len": 3, "output_len": 4}\n{"prompt_len": 3,\n', "line 2", "malformed JSON"),
    ('[3, 4]\n', "line 1", "JSON object"),
    ('{"output_len": 4}\n', "line 1: prompt_len", "missing"),
    ('\n{"prompt_len": 4}\n', "line 2: output_len", "missing"),
    ('{"prompt_len": "4", "output_len": 4}\n', "line 1: prompt_len", "integer"),
    ('{"prompt_len": 4.5, "output_len": 4}\n', "line 1: prompt_len", "integer"),
    ('{"prompt_len": true, "output_len": 4}\n', "line 1: prompt_len", "integer"),
    ('{"prompt_len": 4, "output_len": null}\n', "line 1: output_len", "integer"),
    ('{"prompt_len": 0, "output_len": 4}\n', "line 1: prompt_len", ">= 1"),
    ('{"prompt_len": 4, "output_len": -2}\n', "line 1: output_len", ">= 1"),
    ('\n  \n', "", "no requests"),
])
def test_jsonl_errors(tmp_path, body, field, problem):
    path = _write(tmp_path, "bad.jsonl", body)
    with pytest.raises(InputError) as exc:
        load_workload(str(path))
    assert exc.value.source == str(path) and exc.value.field == field
    assert problem in exc.value.problem


@pytest.mark.parametrize("body, field, problem", [
    ("", "header", "missing"),
    ("prompt_len,out\n3,4\n", "line 1: header", "output_len"),
    ("prompt_len,output_len\n3,4\n5\n", "line 3: output_len", "missing"),
    ("prompt_len,output_len\n3,\n", "line 2: output_len", "missing"),
    ("prompt_len,output_len\n3.5,4\n", "line 2: prompt_len", "integer"),
    ("prompt_len,output_len\nabc,4\n", "line 2: prompt_len", "integer"),
    ("prompt_len,output_len\n\n0,4\n", "line 3: prompt_len", ">= 1"),
    ("prompt_len,output_len\n3,-4\n", "line 2: output_len", ">= 1"),
    ("prompt_len,output_len\n", "", "no requests"),
])
def test_csv_errors(tmp_path, body, field, problem):
    path = _write(tmp_path, "bad.csv", body)
    with pytest.raises(InputError) as exc:
        load_workload(str(path))
    assert exc.value.source == str(path) and exc.value.field == field
    assert problem in exc.value.problem


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"prompt_len,output_len\n\xff\xfe,1\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_workload(str(path))


# ---- the shipped trace ----------------------------------------------------------------------------


def test_shipped_trace_sanity():
    path = shipped_trace_path()
    assert path.is_file() and path.stat().st_size < 400_000
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prompt_len", "output_len"]
    assert all(len(r) == 2 for r in rows[1:])
    w = load_workload("sharegpt")
    assert w.num_requests == len(rows) - 1 > 10_000
    # vLLM's ShareGPT filters (DESIGN.md section 6)
    assert min(w.prompt_lens) >= 4 and min(w.output_lens) >= 4
    assert w.max_prompt_len <= 1024 and w.max_seq_len <= 2048
    # ShareGPT under a Llama-style tokenizer: mean prompt and output of a few hundred tokens
    assert 150 <= w.mean_prompt_len <= 350
    assert 150 <= w.mean_output_len <= 350
    assert w.mean_prompt_len < w.max_prompt_len and statistics.median(w.prompt_lens) < w.mean_prompt_len
    # shuffled, not sorted
    assert list(w.prompt_lens[:200]) != sorted(w.prompt_lens[:200])


def test_shipped_readme_matches_trace():
    readme = (shipped_trace_path().parent / "README.md").read_text(encoding="utf-8")
    n = load_workload("sharegpt").num_requests
    assert f"{n:,} requests kept" in readme
    assert "scripts/build_sharegpt_trace.py" in readme


def test_within_context_drops_prompts_the_runtime_refuses_and_cuts_outputs():
    wl = Workload("t", [100, 4096, 5000, 4000], [10, 5, 5, 200])
    got, dropped = wl.within_context(4096)
    assert dropped == 2 and got.prompt_lens == (100, 4000) and got.output_lens == (10, 96)
    assert wl.within_context(8192) == (wl, 0)
    with pytest.raises(InputError, match="every prompt"):
        Workload("t", [5000], [1]).within_context(4096)

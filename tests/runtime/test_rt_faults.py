"""Faults and bad input for seesaw-run: dead workers, mismatched checkpoints, newer plans, long or
malformed prompts, Ctrl-C. Each case runs the real CLI in a subprocess (its exit code and stderr are
what a user sees) on a small random-weight checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from helpers.checkpoints import LLAMA_GQA, QWEN2_TIED, write_random_checkpoint
from helpers.plans import make_plan

RUN = [sys.executable, "-c", "from seesaw.cli.run import main; main()"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    ckpt = write_random_checkpoint(root / "llama", LLAMA_GQA, seed=3)
    other = write_random_checkpoint(root / "qwen", QWEN2_TIED, seed=3)
    plan = root / "plan.json"
    plan.write_text(make_plan(ckpt, "pp2", "tp2", host_buffer_tokens=64, gpu_kv_tokens=2048).to_json())
    return root, ckpt, other, plan


def _prompts(path: Path, lines: list) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(RUN + [str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (psutil)."""
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie counts as gone)."""
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_prompt_too_long_gets_error_line_and_others_complete(setup, tmp_path):
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2, 3], "max_tokens": 4},
                                               {"prompt_token_ids": [5] * 600, "max_tokens": 4},
                                               {"prompt_token_ids": [7, 8], "max_tokens": 3}])
    out, metrics = tmp_path / "out.jsonl", tmp_path / "m.json"
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", out, "--metrics", metrics, "--no-progress"])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 2]
    assert rows[1]["finish_reason"] == "error" and "context limit" in rows[1]["error"]
    assert [len(rows[0]["token_ids"]), len(rows[2]["token_ids"])] == [4, 3] or rows[0]["finish_reason"] == "stop"
    m = json.loads(metrics.read_text())
    for key in ("requests", "prompt_tokens", "output_tokens", "wall_s", "tokens_per_s", "output_tokens_per_s",
                "prefill_s", "decode_s", "transition_s", "transitions", "kv_swap_out_bytes", "kv_swap_in_bytes"):
        assert key in m
    assert m["transitions"] >= 1 and m["kv_swap_out_bytes"] > 0


def test_start_up_steps_are_shown_on_a_terminal(setup, tmp_path):
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2, 3], "max_tokens": 2}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl"],
             env={**os.environ, "FORCE_COLOR": "1", "TTY_INTERACTIVE": "1"})  # as on a terminal
    assert r.returncode == 0, r.stderr
    assert "checking the plan, the prompts and the checkpoint" in r.stderr and "starting 2 worker(s)" in r.stderr


@pytest.mark.parametrize("line, field", [
    ("{not json", "line 2"),
    ({"prompt_token_ids": [1], "max_tokens": 0}, "line 2: max_tokens"),
    ({"prompt_token_ids": [1], "temperature": -1}, "line 2: temperature"),
    ({"prompt": "x", "prompt_token_ids": [1]}, "line 2"),
    ({"prompt_token_ids": [1], "colour": "red"}, "line 2: colour"),
])
def test_malformed_prompt_lines_are_refused_before_work(setup, tmp_path, line, field):
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2]}, line])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl"])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and str(prompts) in lines[0]
    assert not (tmp_path / "o.jsonl").exists()


def test_token_ids_outside_the_vocabulary_are_refused(setup, tmp_path):
    root, ckpt, _, plan = setup
    vocab = json.loads((Path(ckpt) / "config.json").read_text())["vocab_size"]
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3, vocab]}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl"])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2: prompt_token_ids" in lines[0] and f"token id {vocab}" in lines[0], lines
    assert str(prompts) in lines[0] and not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_cuda_is_refused(setup, tmp_path):
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2], "max_tokens": 2}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl", "--device", "cuda"])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device" in lines[0] and "no CUDA device" in lines[0], lines


def test_kv_cache_larger_than_this_machine_is_refused_before_allocating(setup, tmp_path):
    """A plan sized for GPUs run on CPU ranks: before, the kernel killed the workers with no hint."""
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2], "max_tokens": 2}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl",
              "--gpu-kv-tokens", 10**12])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gpu-kv-tokens" in lines[0] and "GB available" in lines[0], lines
    assert "2xcpu" in lines[0] and "pass --gpu-kv-tokens" in lines[0]


@pytest.mark.parametrize("flag, value, says", [
    ("--host-buffer-tokens", 0, "re-shards (pp2 prefill, tp2 decode)"),
    ("--host-buffer-tokens", -5, "must be 0 or more"),
    ("--gpu-kv-tokens", -1, "at least one page"),
    ("--gpu-kv-tokens", 0, "at least one page"),
])
def test_kv_sizes_the_plan_cannot_run_with_are_refused(setup, tmp_path, flag, value, says):
    """Before, a 0-token host buffer on a re-sharding plan killed the workers with a shape error and a
    negative device cache "completed" with every request failed."""
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2], "max_tokens": 2}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl", flag, value])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and says in lines[0], lines


def test_mismatched_checkpoint_is_refused_naming_the_difference(setup, tmp_path):
    root, _, other, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2]}])
    r = _run([plan, "--checkpoint", other, "--prompts", prompts, "--output", tmp_path / "o.jsonl"])
    assert r.returncode == 2
    assert "mismatch" in r.stderr and "architecture" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_newer_plan_schema_is_refused(setup, tmp_path):
    root, ckpt, _, plan = setup
    data = json.loads(plan.read_text())
    data["schema_version"] = "99.0"
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2]}])
    r = _run([newer, "--checkpoint", ckpt, "--prompts", prompts, "--output", tmp_path / "o.jsonl"])
    assert r.returncode == 2 and "99.0" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _start_long_run(setup, tmp_path) -> tuple[subprocess.Popen, list[int]]:
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [i + 1] * 8, "max_tokens": 400,
                                               "ignore_eos": True} for i in range(48)])
    proc = subprocess.Popen(RUN + [str(plan), "--checkpoint", str(ckpt), "--prompts", str(prompts), "--output",
                                   str(tmp_path / "o.jsonl"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline:  # wait until both workers run and the run has started
        workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    assert len(workers) >= 2, "workers did not start"
    time.sleep(6)  # let them load and begin generating
    return proc, workers


def test_dead_worker_ends_the_run_naming_the_rank(setup, tmp_path):
    proc, workers = _start_long_run(setup, tmp_path)
    killed = time.monotonic()
    os.kill(workers[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - killed < 30
    assert proc.returncode not in (0, None)
    assert "rank" in err and "died" in err
    time.sleep(1)
    assert _alive(workers) == []


def test_ctrl_c_while_workers_start_stops_them_without_a_traceback(setup, tmp_path):
    """Ctrl-C reaches the whole process group; a worker still importing must not print a traceback or
    keep running: the workers ignore SIGINT and the scheduler's process stops them."""
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2, 3], "max_tokens": 4}])
    proc = subprocess.Popen(RUN + [str(plan), "--checkpoint", str(ckpt), "--prompts", str(prompts), "--output",
                                   str(tmp_path / "o.jsonl"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:  # interrupt as soon as both workers exist
        workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        time.sleep(0.05)
    assert len(workers) >= 2, "workers did not start"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    time.sleep(1)
    assert _alive(workers) == []


def test_ctrl_c_shuts_down_every_rank(setup, tmp_path):
    proc, workers = _start_long_run(setup, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    time.sleep(1)
    assert _alive(workers) == []


def test_output_in_a_missing_folder_is_refused_before_any_work(setup, tmp_path):
    root, ckpt, _, plan = setup
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2], "max_tokens": 2}])
    for flag in ("--output", "--metrics"):
        args = {"--output": tmp_path / "o.jsonl", "--metrics": tmp_path / "m.json"}
        args[flag] = tmp_path / "missing" / "x"
        r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, *[a for kv in args.items() for a in kv]])
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0] and "does not exist" in lines[0], lines


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_a_run_that_dies_keeps_what_completed_and_resume_finishes_it(setup, tmp_path):
    """Short requests finish and are written while long ones run; a worker then dies. Their lines stay in the
    output, the metrics name them, and --resume runs only the rest, ending with every line in input order."""
    root, ckpt, _, plan = setup
    n = 24
    reqs = [{"prompt_token_ids": [i + 1] * 4, "max_tokens": 2 if i % 4 == 0 else 150, "ignore_eos": True}
            for i in range(n)]
    prompts = _prompts(tmp_path / "p.jsonl", reqs)
    out, metrics = tmp_path / "o.jsonl", tmp_path / "m.json"
    args = [plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", out, "--metrics", metrics, "--no-progress"]
    proc = subprocess.Popen(RUN + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(_lines(out)) >= 3):
        time.sleep(0.05)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(_lines(out)) >= 3 and workers
    os.kill(workers[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "rerun with --resume" in err, err
    kept = _lines(out)
    report = json.loads(metrics.read_text())
    assert sorted(r["index"] for r in kept) == report["completed_indices"]
    assert 3 <= len(kept) < n
    assert all(len(r["token_ids"]) == reqs[r["index"]]["max_tokens"] for r in kept)

    r = _run([*args, "--resume"])
    assert r.returncode == 0, r.stderr
    final = _lines(out)
    assert [x["index"] for x in final] == list(range(n))
    assert all(len(x["token_ids"]) == reqs[x["index"]]["max_tokens"] for x in final)
    assert [x for x in final if x["index"] in report["completed_indices"]] == sorted(kept, key=lambda x: x["index"])
    assert json.loads(metrics.read_text())["resumed"] == len(kept)


def test_resume_refuses_an_output_of_other_prompts(setup, tmp_path):
    root, ckpt, _, plan = setup
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"index": 0, "prompt_token_ids": [9, 9], "token_ids": [1], "text": None,
                               "finish_reason": "length"}) + "\n")
    prompts = _prompts(tmp_path / "p.jsonl", [{"prompt_token_ids": [1, 2], "max_tokens": 2}])
    r = _run([plan, "--checkpoint", ckpt, "--prompts", prompts, "--output", out, "--resume"])
    assert r.returncode == 2 and "--resume" in r.stderr and "prompt differs" in r.stderr, r.stderr

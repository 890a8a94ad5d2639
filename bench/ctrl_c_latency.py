"""Benchmark: how long `seesaw-run` takes to stop every process after a terminal's Ctrl-C (not a test).

    python bench/ctrl_c_latency.py [--delays 2 3 4 5 8 30 60] [--prompts 400] [--max-tokens 128]

Plans SmolLM2-135M on 2xcpu, writes ``--prompts`` prompts of 64-263 token ids with ``--max-tokens`` tokens each,
and for each delay starts `seesaw-run` (output and metrics to files) in its own session, sends SIGINT to the
whole process group after that many seconds, as a terminal's Ctrl-C does, and prints per delay: the exit status,
the seconds until the launcher exited and until every process of the run was gone, the output lines kept, and
any process left running (killed afterwards).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _tree(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids) -> list[int]:
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", type=float, nargs="*", default=[2, 3, 4, 5, 8, 30, 60])
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    from seesaw.runtime.assets import smollm2_gguf_path  # noqa: PLC0415

    ckpt = str(smollm2_gguf_path())
    work = Path(tempfile.mkdtemp(prefix="ctrl-c-"))
    subprocess.run(["seesaw-plan", "--model", "SmolLM2-135M", "--cluster", "2xcpu", "--workload", "sharegpt:64",
                    "-o", str(work / "plan.json")], check=True, capture_output=True)
    with open(work / "prompts.jsonl", "w") as f:
        for i in range(args.prompts):
            ids = [(i * 7 + j) % 4000 + 10 for j in range(64 + i % 200)]
            f.write(json.dumps({"prompt_token_ids": ids, "max_tokens": args.max_tokens, "ignore_eos": True}) + "\n")
    for delay in args.delays:
        out = work / f"out-{delay:g}.jsonl"
        log = open(work / f"log-{delay:g}.txt", "w")
        proc = subprocess.Popen(
            ["seesaw-run", str(work / "plan.json"), "--checkpoint", ckpt, "--prompts", str(work / "prompts.jsonl"),
             "--output", str(out), "--metrics", str(work / f"metrics-{delay:g}.json")],
            stdout=log, stderr=log, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a launching shell may ignore it
        pids: set[int] = set()
        start = time.monotonic()
        while time.monotonic() - start < delay:
            pids |= set(_tree(proc.pid))
            time.sleep(0.1)
        pids |= set(_tree(proc.pid))
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        launcher_s = time.monotonic() - sent
        while _alive(pids) and time.monotonic() - sent < 120:
            time.sleep(0.1)
        all_s = time.monotonic() - sent
        left = _alive(pids)
        for p in left:
            os.kill(p, signal.SIGKILL)
        lines = len(out.read_text().splitlines()) if out.exists() else 0
        print(f"SIGINT at {delay:g} s: exit {rc}, launcher gone in {launcher_s:.1f} s, every process in {all_s:.1f} s, "
              f"{lines} output lines kept, left running: {left or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

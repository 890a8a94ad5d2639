"""Test helpers (import as ``helpers.checkpoints``): small random Hugging Face checkpoints and the real SmolLM2.

``LLAMA_GQA`` and ``QWEN2_TIED`` are ``config.json`` dicts (copy before editing) whose head counts are even, so
TP 1 and 2 both work. :func:`write_random_checkpoint` saves a seeded random float32 model built by
``transformers`` from such a dict; :func:`smollm2_folder` is the SmolLM2-135M-Instruct GGUF converted once into
a cached folder (downloads ~60 MB the first time, ~20 s to convert, then cached under ``$SEESAW_CACHE``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

LLAMA_GQA: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}

QWEN2_TIED: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "torch_dtype": "float32",
}

QWEN3_QK_NORM: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "head_dim": 32,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}

LLAMA3_ROPE: dict[str, Any] = {
    **LLAMA_GQA, "num_hidden_layers": 2, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64},
}

MIXTRAL_MOE: dict[str, Any] = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "num_local_experts": 4, "num_experts_per_tok": 2,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}

QWEN3_MOE: dict[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
    "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
    "head_dim": 16, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}

_NOISE_STD = 0.02


def build_random_model(hf_config: dict[str, Any], seed: int = 0):
    """A float32 ``transformers`` causal LM for ``hf_config`` (needs ``model_type``), in eval mode, with every
    parameter set from a ``torch.Generator`` seeded with ``seed``: the library's own init, then N(0, 0.02)
    noise added to every tensor so norm weights and biases are not all ones/zeros. The global RNG is left
    untouched; equal seeds give equal weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(hf_config)
    model_type = cfg.pop("model_type")
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    config = AutoConfig.for_model(model_type, **cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * _NOISE_STD)
    return model.eval()


def write_random_checkpoint(folder: str | Path, hf_config: dict[str, Any], seed: int = 0, **save_kwargs) -> Path:
    """Save a seeded random model for ``hf_config`` into ``folder`` with ``save_pretrained(safe_serialization=
    True, **save_kwargs)`` (e.g. ``max_shard_size="200KB"`` for a sharded checkpoint with an index file);
    returns ``folder``. Tied configs store ``model.embed_tokens.weight`` only."""
    folder = Path(folder)
    build_random_model(hf_config, seed).save_pretrained(str(folder), safe_serialization=True, **save_kwargs)
    return folder


def smollm2_folder() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF dequantized into a cached float32 Hugging Face folder
    (:func:`seesaw.runtime.checkpoint.prepare_checkpoint` of :func:`seesaw.runtime.assets.smollm2_gguf_path`)."""
    from seesaw.runtime.assets import smollm2_gguf_path
    from seesaw.runtime.checkpoint import prepare_checkpoint

    return prepare_checkpoint(smollm2_gguf_path())

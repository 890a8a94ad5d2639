"""Test helpers (import as ``helpers.instances``). Small planning instances: a 6-layer model on 4 GPUs with memory tight enough to bind."""
from __future__ import annotations

import random

from seesaw.ir import ModelConfig
from seesaw.planner.hardware import get_gpu
from seesaw.planner.hardware.cluster import build_cluster
from seesaw.planner.workload import Workload

TINY = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 1024,
    "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 2000,
    "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
}


def tiny_model(**over) -> ModelConfig:
    return ModelConfig.from_hf_dict({**TINY, **over}, name="tiny")


def tiny_cluster(memory_gb: float = 0.06, host_memory_gb: float = 2.0, link: str = "pcie",
                 num_gpus: int = 4, gpus_per_node: int = 4, link_gb_per_s: float = 16.0):
    base = get_gpu("A10" if link == "pcie" else "A100-SXM-80GB")
    # all of the given memory is budgeted and the link figure is the model (no measured curves), so the
    # instances stay as tight and as link-bound as their arguments say
    gpu = base.model_copy(update={"memory_gb": memory_gb, "runtime_reserve_gb": 0.0, "memory_fraction": 1.0,
                                  "allreduce_us": {}, "allgather_us": {}})
    return build_cluster(gpu, num_gpus, "test", "test", gpus_per_node=gpus_per_node,
                         host_memory_gb=host_memory_gb, gpu_link_gb_per_s=link_gb_per_s)


def tiny_workload(n: int = 48, seed: int = 0, max_prompt: int = 300, max_output: int = 200) -> Workload:
    rng = random.Random(seed)
    return Workload("tiny", tuple(rng.randint(4, max_prompt) for _ in range(n)),
                    tuple(rng.randint(4, max_output) for _ in range(n)))


"""Serving engines the planner simulates as the static baseline (``engines.yaml`` beside this module).

An :class:`EngineSpec` holds what the request-level engine simulation needs beyond the GPU: the host time of
one engine step and the knobs the engine picks by default; each figure group names its source.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seesaw.ir.errors import InputError
from seesaw.planner.hardware.catalog import GPUSpec, validation_to_input_error

ENGINES_PATH = Path(__file__).with_name("engines.yaml")
GIB = 2**30


class EngineSpec(BaseModel):
    """One engine's host overhead and default knobs (vLLM's names for the knobs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    step_overhead_us: float = Field(ge=0, description="host time per engine step, fixed part")
    seq_overhead_us: float = Field(ge=0, description="host time per engine step per scheduled request")
    gpu_memory_utilization: float = Field(gt=0, le=1)
    block_size: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    large_gpu_min_gib: float = Field(gt=0)
    large_gpu_exclude: tuple[str, ...] = ()
    large_max_num_seqs: int = Field(gt=0)
    large_max_num_batched_tokens: int = Field(gt=0)
    chunked_prefill: bool = Field(True, description=(
        "prompts are chunked into steps beside decoding requests under the token budget (vLLM V1, "
        "TensorRT-LLM); without it a step either prefills whole prompts or decodes (vLLM V0's default)"))
    memory_fraction_of: Literal["total", "free"] = Field("total", description=(
        "what gpu_memory_utilization is a share of: the device's memory (vLLM) or the memory left free "
        "after the weights and activations (TensorRT-LLM's kv_cache_free_gpu_mem_fraction)"))
    kv_admission: Literal["preempt", "reserve"] = Field("preempt", description=(
        "preempt: KV blocks are allocated as tokens are computed and a request that finds none preempts "
        "another (vLLM); reserve: a request is admitted only when blocks for its prompt and all its output "
        "are free, and nothing is preempted (TensorRT-LLM's GUARANTEED_NO_EVICT)"))
    expert_parallel: Literal["tp-group", "any"] = Field("any", description=(
        "the expert-parallel layouts the engine runs: tp-group, EP over the whole TP group with whole experts "
        "(vLLM's --enable-expert-parallel: ep = 1 or ep = tp), or any ep dividing tp with the experts "
        "tensor-parallel inside each group (TensorRT-LLM's --ep_size, SGLang's --ep-size)"))
    source: dict[str, str]

    def runs_layout(self, tp: int, ep: int) -> bool:
        """Whether the engine can run ``ep``-way expert parallelism inside a ``tp``-way TP group."""
        return self.expert_parallel == "any" or ep in (1, tp)

    def host_s(self, requests: int) -> float:
        """Host seconds of one step scheduling ``requests`` requests."""
        return (self.step_overhead_us + self.seq_overhead_us * requests) * 1e-6

    def default_knobs(self, gpu: GPUSpec) -> tuple[int, int]:
        """``(max_num_seqs, max_num_batched_tokens)`` the engine picks on ``gpu`` when the user sets none."""
        large = gpu.memory_bytes >= self.large_gpu_min_gib * GIB and not any(
            x.lower() in gpu.name.lower() for x in self.large_gpu_exclude)
        if large:
            return self.large_max_num_seqs, self.large_max_num_batched_tokens
        return self.max_num_seqs, self.max_num_batched_tokens


@functools.lru_cache(maxsize=4)
def load_engines(path: str | None = None) -> dict[str, EngineSpec]:
    """Every engine of ``engines.yaml`` (or ``path``) by name; InputError naming the file and field when
    an entry is malformed or lacks a source for its overhead or knobs."""
    src = str(path or ENGINES_PATH)
    raw = yaml.safe_load(Path(src).read_text())
    out = {}
    for name, entry in raw.items():
        try:
            spec = EngineSpec(name=name, **entry)
        except ValidationError as e:
            raise validation_to_input_error(e, src, prefix=f"{name}.") from None
        missing = [g for g in ("overhead", "knobs") if not spec.source.get(g, "").strip()]
        if missing:
            raise InputError(f"{name}.source", f"no source for: {', '.join(missing)}", src)
        out[name] = spec
    return out


def get_engine(name: str) -> EngineSpec:
    """The engine named ``name``; InputError listing the known ones otherwise."""
    engines = load_engines()
    if name not in engines:
        raise InputError("--engine", f"unknown engine '{name}' (known: {', '.join(engines)})")
    return engines[name]

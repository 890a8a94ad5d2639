"""The hardware catalog: per-device figures the cost model reads (``catalog.yaml`` beside this module).

Units: every ``*_gb`` field is decimal gigabytes (1e9 bytes) and every ``*_gb_per_s`` field is 1e9
bytes/s per direction; ``*_us`` fields are microseconds. Figures come from DESIGN.md section 5
(datasheets, dense, no sparsity), DESIGN.md section 4 (NCCL latencies), the Seesaw paper (via DESIGN 5),
and, for the ``cpu`` device, measurements on this project's 2-core machine (``seesaw-calibrate`` now takes
them: :mod:`seesaw.runtime.microbench` + :mod:`seesaw.planner.calibration.fit`). Each entry's ``source``
mapping names where each figure group came from and says which figures are estimates. A profile written by
``seesaw-calibrate`` is a catalog file of one entry.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seesaw.ir.errors import InputError

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
#: Terms fitted to measured kernel and collective tables (scripts/fit_gpu_catalog.py writes it), merged over
#: the packaged catalog's entries of the same name.
FITTED_PATH = Path(__file__).with_name("catalog_fitted.yaml")
GB = 1e9  # bytes per decimal gigabyte: the unit of every *_gb field
LinkKind = Literal["pcie", "nvlink", "gloo"]

# Figure groups: each catalog entry's ``source`` must name one source string per group.
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "compute": ("memory_gb", "bf16_tflops", "memory_gb_per_s", "dtype_bytes"),
    "links": ("link", "gpu_link_gb_per_s", "host_link_gb_per_s"),
    "latency": ("gpu_link_latency_us", "collective_launch_us"),
    "host": ("host_memory_gb_per_gpu", "gpus_per_node"),
    "efficiency": ("matmul_efficiency", "memory_efficiency", "link_efficiency"),
    "reserve": ("runtime_reserve_gb", "memory_fraction"),
}
# Optional fields (defaults = the ideal roofline: no fixed overheads, full compute/memory overlap, GEMMs
# at full rate from one row). Measured by ``seesaw-calibrate``; an entry that sets any of them must name
# a source for the "overheads" group.
OVERHEAD_FIELDS: tuple[str, ...] = ("matmul_half_rows", "matmul_pack_ratio", "compute_memory_overlap",
                                    "attention_efficiency", "attention_memory_efficiency", "lm_head_efficiency",
                                    "op_overhead_us", "elementwise_overhead_us", "attention_overhead_us",
                                    "attention_seq_overhead_us",
                                    "step_overhead_us")
# Optional measured collective curves; an entry that sets them must name a source for "collectives".
CURVE_FIELDS: tuple[str, ...] = ("allreduce_us", "allgather_us")
# Optional FP8 tensor-core rate (default 0: none); an entry that sets it must name a source for "fp8". Every
# entry of the packaged catalog sets it (a calibration profile of one entry need not).
FP8_FIELDS: tuple[str, ...] = ("fp8_tflops",)
# Optional fused mixture-of-experts kernel terms (defaults: the dense GEMM's rate, no fixed cost); an entry that
# sets them to other values must name a source for "moe" (a calibration profile writes the defaults).
MOE_FIELDS: tuple[str, ...] = ("moe_efficiency", "moe_overhead_us", "moe_ep_efficiency", "moe_ep_overhead_us")


class GPUSpec(BaseModel):
    """One device type ("GPU"; the ``cpu`` entry is one CPU process per rank).

    Defaults apply only to custom GPUs given as a mapping in a cluster file: conservative PCIe Gen4
    figures as the A10 entry has them (16 GiB/s links, 7 us launch + 5 us per hop), the planning
    efficiency factors (0.7 / 0.8 / 0.8) and a 2 GB runtime reserve. Catalog entries must spell out every
    field (:func:`load_catalog` checks).

    ``bf16_tflops`` is the dense peak at the entry's runtime dtype (``dtype_bytes``): bf16 on GPUs, fp32
    (``dtype_bytes: 4``) on ``cpu``, where it is a measured achieved rate rather than a peak.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    memory_gb: float = Field(gt=0, description="device memory per GPU, 1e9 bytes")
    bf16_tflops: float = Field(gt=0, description="dense peak TFLOP/s at the runtime dtype")
    fp8_tflops: float = Field(0.0, ge=0, description=(
        "dense (no 2:4 sparsity) peak TFLOP/s of FP8 x FP8 GEMMs on tensor cores; 0: the device has no FP8 "
        "tensor cores, so FP8 weights are dequantized inside the GEMM and it runs at bf16_tflops"))
    memory_gb_per_s: float = Field(gt=0, description="peak device memory bandwidth, 1e9 B/s")
    dtype_bytes: Literal[2, 4] = 2
    link: LinkKind = "pcie"
    gpu_link_gb_per_s: float = Field(17.18, gt=0, description="GPU-GPU bandwidth per direction, 1e9 B/s")
    gpu_link_latency_us: float = Field(5.0, ge=0, description="per ring hop")
    host_link_gb_per_s: float = Field(17.18, gt=0, description="host<->device bandwidth per direction")
    host_memory_gb_per_gpu: float = Field(85.9, gt=0)
    gpus_per_node: int = Field(8, gt=0)
    matmul_efficiency: float = Field(0.7, gt=0, le=1)
    memory_efficiency: float = Field(0.8, gt=0, le=1)
    link_efficiency: float = Field(0.8, gt=0, le=1)
    collective_launch_us: float = Field(7.0, ge=0, description="fixed per-collective overhead")
    runtime_reserve_gb: float = Field(2.0, ge=0, description="CUDA context, allocator, comm buffers")
    memory_fraction: float = Field(1.0, gt=0, le=1, description=(
        "share of device memory a runtime budgets for weights, workspace and KV (vLLM's "
        "gpu_memory_utilization); the rest absorbs allocator fragmentation and activation peaks"))
    matmul_half_rows: float = Field(0.0, ge=0, description=(
        "Hockney's n_1/2 for GEMMs: rows (tokens) at which a GEMM reaches half its full FLOP rate"))
    matmul_pack_ratio: float = Field(0.0, ge=0, description=(
        "extra memory traffic of a GEMM of two or more rows, as a share of its bytes: a CPU BLAS packs the "
        "weight panels it streams (one more read and write of them), a one-row GEMV does not"))
    compute_memory_overlap: float = Field(1.0, ge=0, le=1, description=(
        "share of the shorter of compute and memory time hidden under the longer (1 = roofline max, 0 = sum)"))
    attention_efficiency: float = Field(1.0, gt=0, le=1, description=(
        "attention's FLOP rate as a share of the GEMM rate (causal FLOPs counted; a kernel that computes the "
        "masked half, or is not fused, gets less)"))
    attention_memory_efficiency: float = Field(1.0, gt=0, le=1, description=(
        "attention's memory rate (K/V reads) as a share of the streaming rate: a paged decode kernel that "
        "gathers or re-lays out K/V reads it slower than a GEMM streams weights"))
    lm_head_efficiency: float = Field(1.0, gt=0, le=1, description=(
        "the lm head GEMM's FLOP and memory rates as a share of the other GEMMs' (a vocabulary-wide weight, "
        "e.g. 49,152 x 512, that a CPU BLAS streams slower per byte than a layer's projections)"))
    moe_efficiency: float = Field(1.0, gt=0, le=1, description=(
        "a fused mixture-of-experts kernel's FLOP rate as a share of the GEMM rate at the same rows per expert "
        "(routing, gather and scatter of the tokens, one grouped launch over uneven experts)"))
    moe_overhead_us: float = Field(0.0, ge=0, description="fixed time per mixture-of-experts layer (routing set-up, launch)")
    moe_ep_efficiency: float = Field(1.0, gt=0, le=1.5, description=(
        "an expert-parallel fused mixture-of-experts kernel's FLOP rate as a share of the tensor-parallel one "
        "(moe_efficiency's): whole experts on a rank, all tokens in, the other groups' experts masked out"))
    moe_ep_overhead_us: float = Field(0.0, ge=0, description=(
        "extra fixed time per expert-parallel mixture-of-experts layer (mapping the routed experts to the local ones)"))
    op_overhead_us: float = Field(0.0, ge=0, description="fixed time per compute op (kernel launch / dispatch)")
    elementwise_overhead_us: float = Field(0.0, ge=0, description=(
        "extra fixed time per elementwise op (embedding, RMSNorm, RoPE, SiLU-mul, residual add, sampling) on "
        "top of op_overhead_us: each is several small kernels, each dispatched against caches a forward pass "
        "keeps cold"))
    attention_overhead_us: float = Field(0.0, ge=0, description=(
        "extra fixed time per attention op on top of op_overhead_us (a fused attention kernel's launch, split "
        "and combine passes: its floor sits above a GEMM's)"))
    attention_seq_overhead_us: float = Field(0.0, ge=0, description="fixed time per sequence per attention op")
    step_overhead_us: float = Field(0.0, ge=0, description="fixed time per micro-batch on every rank")
    allreduce_us: dict[int, tuple[tuple[float, float], ...]] = Field(default_factory=dict, description=(
        "measured all-reduce time inside a node: ranks -> ((bytes per rank, microseconds), ...) ascending in "
        "bytes; used instead of the alpha-beta model for those rank counts (Cluster.allreduce_s)"))
    allgather_us: dict[int, tuple[tuple[float, float], ...]] = Field(default_factory=dict, description=(
        "measured all-gather time inside a node: ranks -> ((gathered bytes, microseconds), ...)"))
    source: dict[str, str] = Field(default_factory=dict, description="figure group -> where it came from")

    @field_validator("allreduce_us", "allgather_us")
    @classmethod
    def _curves_ascend(cls, curves: dict) -> dict:
        for ranks, points in curves.items():
            if ranks < 2 or not points:
                raise ValueError(f"ranks {ranks}: a curve needs 2 or more ranks and at least one point")
            if any(b <= 0 or t <= 0 for b, t in points):
                raise ValueError(f"ranks {ranks}: bytes and microseconds must be positive")
            if any(b1 <= b0 for (b0, _), (b1, _) in zip(points, points[1:])):
                raise ValueError(f"ranks {ranks}: bytes must be strictly ascending")
        return curves

    def __hash__(self) -> int:  # frozen and hashable despite the ``source`` dict (usable as a cache key)
        return hash((type(self), self.name, self.memory_gb, self.bf16_tflops, self.memory_gb_per_s))

    def curve_s(self, field: str, ranks: int, nbytes: float) -> float | None:
        """Seconds of a measured collective (``allreduce_us`` or ``allgather_us``) of ``nbytes`` over
        ``ranks`` ranks, interpolated log-log between the measured sizes (below the smallest: its time; above
        the largest: the last interval's time per byte); None when that rank count was not measured."""
        points = getattr(self, field).get(ranks)  # bytes ascending, times positive (validated)
        if not points:
            return None
        if nbytes <= points[0][0]:
            return points[0][1] * 1e-6
        for (b0, t0), (b1, t1) in zip(points, points[1:]):
            if nbytes <= b1:
                f = math.log(nbytes / b0) / math.log(b1 / b0)
                return t0 * (t1 / t0) ** f * 1e-6
        (b0, t0), (b1, t1) = points[-2:] if len(points) > 1 else (points[0], points[0])
        slope = (t1 - t0) / (b1 - b0) if b1 > b0 and t1 > t0 else t1 / b1  # (measurement noise: never falls)
        return (t1 + slope * (nbytes - b1)) * 1e-6

    @property
    def peak_flops(self) -> float:
        """Dense peak FLOP/s (``bf16_tflops * 1e12``)."""
        return self.bf16_tflops * 1e12

    @property
    def achievable_fp8_flops(self) -> float:
        """FLOP/s of an FP8 x FP8 GEMM: ``fp8_tflops * 1e12 * matmul_efficiency`` (the bf16 GEMMs' efficiency,
        assumed), or :attr:`achievable_flops` on a device without FP8 tensor cores (``fp8_tflops`` 0)."""
        if self.fp8_tflops <= 0:
            return self.achievable_flops
        return self.fp8_tflops * 1e12 * self.matmul_efficiency

    @property
    def memory_bytes(self) -> int:
        """Device memory per GPU in bytes (``memory_gb * 1e9``)."""
        return int(self.memory_gb * GB)

    @property
    def memory_bytes_per_s(self) -> float:
        """Peak device memory bandwidth, bytes/s."""
        return self.memory_gb_per_s * GB

    @property
    def achievable_flops(self) -> float:
        """FLOP/s the roofline should use: ``peak_flops * matmul_efficiency``."""
        return self.peak_flops * self.matmul_efficiency

    @property
    def achievable_memory_bytes_per_s(self) -> float:
        """Memory bytes/s the roofline should use: ``memory_bytes_per_s * memory_efficiency``."""
        return self.memory_bytes_per_s * self.memory_efficiency

    @property
    def budget_bytes(self) -> int:
        """Device memory a runtime may fill with weights, workspace and KV cache:
        ``memory_fraction * memory_bytes - runtime_reserve_bytes``."""
        return int(self.memory_fraction * self.memory_bytes) - self.runtime_reserve_bytes

    @property
    def runtime_reserve_bytes(self) -> int:
        """Device memory the runtime itself holds (context, allocator slack), bytes."""
        return int(self.runtime_reserve_gb * GB)


def normalize_name(name: str) -> str:
    """Lookup key of a GPU name or alias: case-insensitive, ``_`` and spaces read as ``-``."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def validation_to_input_error(err: ValidationError, source: str | None, prefix: str = "") -> InputError:
    """The first problem of a pydantic ``ValidationError`` as an :class:`InputError` naming the field."""
    first = err.errors()[0]
    field = prefix + ".".join(str(p) for p in first["loc"])
    problem = first["msg"]
    if "input" in first and not isinstance(first["input"], dict):
        problem += f" (got {first['input']!r})"
    return InputError(field.rstrip("."), problem, source)


def _parse_catalog(path: Path) -> dict[str, GPUSpec]:
    src = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InputError("catalog", f"cannot read: {e.strerror or e}", src) from None
    except yaml.YAMLError as e:
        raise InputError("catalog", f"malformed YAML: {e}", src) from None
    if not isinstance(raw, dict) or not raw:
        raise InputError("catalog", "must be a non-empty mapping of GPU name -> figures", src)
    if path == CATALOG_PATH and FITTED_PATH.is_file():
        raw = _merge_fitted(raw, yaml.safe_load(FITTED_PATH.read_text()) or {})
    required = set(GPUSpec.model_fields) - {"name", "aliases", *OVERHEAD_FIELDS, *CURVE_FIELDS, *FP8_FIELDS,
                                            *MOE_FIELDS}
    specs: dict[str, GPUSpec] = {}
    keys: dict[str, str] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise InputError(str(name), "entry must be a mapping", src)
        missing = sorted(required - set(entry))
        if missing:
            raise InputError(str(name), f"missing fields: {', '.join(missing)}", src)
        try:
            spec = GPUSpec(name=str(name), **entry)
        except ValidationError as e:
            raise validation_to_input_error(e, src, prefix=f"{name}.") from None
        groups = [*SOURCE_GROUPS, *(["overheads"] if set(entry) & set(OVERHEAD_FIELDS) else []),
                  *(["collectives"] if set(entry) & set(CURVE_FIELDS) else []),
                  *(["fp8"] if set(entry) & set(FP8_FIELDS) else []),
                  *(["moe"] if any(k in entry and entry[k] != GPUSpec.model_fields[k].default
                                   for k in MOE_FIELDS) else [])]
        lacking = [g for g in groups if not spec.source.get(g, "").strip()]
        if lacking:
            raise InputError(f"{name}.source", f"no source for figure groups: {', '.join(lacking)}", src)
        for key in (spec.name, *spec.aliases):
            norm = normalize_name(key)
            if norm in keys and keys[norm] != spec.name:
                raise InputError(f"{name}.aliases", f"'{key}' already names {keys[norm]}", src)
            keys[norm] = spec.name
        specs[spec.name] = spec
    return specs


def _merge_fitted(raw: dict, fitted: dict) -> dict:
    """``raw``'s entries with ``fitted``'s fields replacing theirs and its sources added per figure group."""
    out = dict(raw)
    for name, terms in fitted.items():
        if name not in out:
            continue
        entry = {**out[name], **{k: v for k, v in terms.items() if k != "source"}}
        entry["source"] = {**out[name].get("source", {}), **terms.get("source", {})}
        out[name] = entry
    return out


@functools.lru_cache(maxsize=8)
def _cached_catalog(path: str) -> dict[str, GPUSpec]:
    return _parse_catalog(Path(path))


def load_catalog(path: str | Path | None = None) -> dict[str, GPUSpec]:
    """All catalog entries by canonical name (a fresh dict of frozen :class:`GPUSpec`).

    ``path`` defaults to the packaged ``catalog.yaml``. Raises :class:`InputError` (source = the file)
    when the file is unreadable or malformed, an entry lacks a field or a source, or two entries share
    an alias.
    """
    return dict(_cached_catalog(str(path or CATALOG_PATH)))


def get_gpu(name: str, catalog: dict[str, GPUSpec] | None = None) -> GPUSpec:
    """The catalog entry named ``name`` or one of its aliases, case-insensitively.

    Raises ``InputError('gpu', "unknown GPU 'X' (known: ...)")`` (no source; callers attach theirs).
    """
    catalog = load_catalog() if catalog is None else catalog
    wanted = normalize_name(str(name))
    for spec in catalog.values():
        if wanted in {normalize_name(k) for k in (spec.name, *spec.aliases)}:
            return spec
    raise InputError("gpu", f"unknown GPU '{name}' (known: {', '.join(catalog)})")


def match_device_name(device_name: str, catalog: dict[str, GPUSpec] | None = None) -> GPUSpec | None:
    """The catalog entry a driver's device name denotes (``torch.cuda.get_device_name()``), or None.

    A name or alias matches when all its words (as :func:`normalize_name` splits them) occur in the device
    name, ignoring a leading ``nvidia``; the match with the most words wins, so "NVIDIA H100 PCIe" is
    H100-PCIe and "NVIDIA H100 80GB HBM3" is H100-SXM (alias H100-80GB).
    """
    catalog = load_catalog() if catalog is None else catalog
    words = set(normalize_name(device_name).split("-")) - {"nvidia"}
    best, best_len = None, 0
    for spec in catalog.values():
        for key in (spec.name, *spec.aliases):
            need = set(normalize_name(key).split("-"))
            if need <= words and len(need) > best_len:
                best, best_len = spec, len(need)
    return best

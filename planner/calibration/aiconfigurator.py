"""NVIDIA AIConfigurator's measured GPU tables as calibration samples (``seesaw-calibrate --from-aiconfigurator``).

The ``aiconfigurator-core`` wheel (Apache-2.0; ``pip install "seesaw[aiconfigurator]"``) ships kernel timings
measured on real GPUs under ``aiconfigurator_core/systems/data/<system>/``: GEMMs (``gemm_perf.parquet``:
``m, n, k``, latency in ms), context and generation attention (``context_attention_perf.parquet``,
``generation_attention_perf.parquet``: batch, prompt length or KV length, heads, KV heads, head dim) and
collectives (``nccl_perf.parquet`` and the engines' ``custom_allreduce_perf.parquet``: message size in
elements, GPUs, latency in ms), each table under the engine and version it was collected with.

This module reads the tables of one system as the serving engine would run them (vLLM's tables: bf16
``torch.nn.functional.linear`` GEMMs, FlashAttention-3 or -2 attention with a bf16 KV cache and no sliding
window) and turns them into :class:`~seesaw.planner.calibration.samples.OpSample` (FLOPs and bytes counted as the
IR counts them) and measured all-reduce curves; :func:`fit_system` fits a catalog entry to them with the
planner's own kernel fit. pandas (a dependency of ``aiconfigurator-core``) is only needed here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from seesaw.ir.errors import InputError
from seesaw.planner.calibration.samples import OpSample

#: AIConfigurator system name -> this catalog's GPU name.
SYSTEMS = {"h100_sxm": "H100-SXM", "h200_sxm": "H200-SXM", "a100_sxm": "A100-SXM-80GB", "l40s": "L40S",
           "b200_sxm": "B200"}
#: GEMM widths kept (the ``n`` and ``k`` of LLM layer shards) and the largest ``m`` (tokens) kept.
GEMM_DIMS = (1024, 2048, 3072, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 28672)
ATTN_HEAD_DIM = 128
MAX_SAMPLES = {"gemm": 360, "context": 160, "generation": 200}


def data_dir() -> Path:
    """The tables' folder of the installed ``aiconfigurator-core``; InputError saying how to install it."""
    try:
        import aiconfigurator_core  # noqa: PLC0415
    except ImportError:
        raise InputError("--from-aiconfigurator", "needs the aiconfigurator-core package: "
                         "pip install 'seesaw[aiconfigurator]'") from None
    return Path(aiconfigurator_core.__file__).parent / "systems" / "data"


def _version_key(v: str):
    """Release order of a table folder's version (``0.5.0rc1`` before ``0.5.0``; unparsable ones first)."""
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, Version("0"))


@dataclass(frozen=True)
class Table:
    """One measured table: its rows (a pandas DataFrame), the file and the collector's engine and version."""

    rows: object
    path: Path
    framework: str
    version: str

    def cite(self) -> str:
        """``AIConfigurator <version> measured table <system>/<op>/<engine>/<version>/<file>``."""
        return f"AIConfigurator {_aic_version()} measured table {'/'.join(self.path.parts[-5:])}"


def _aic_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("aiconfigurator-core")
    except PackageNotFoundError:
        return "(unknown version)"


def load_table(system: str, op: str, name: str, framework: str = "vllm") -> Table:
    """The newest ``<name>.parquet`` of ``op`` (gemm, attention, comm) collected with ``framework`` on
    ``system``; InputError naming the system and table when there is none."""
    import pandas as pd  # noqa: PLC0415

    if system not in SYSTEMS:
        raise InputError("--from-aiconfigurator", f"unknown system '{system}' (known: {', '.join(SYSTEMS)})")
    folder = data_dir() / system / op / framework
    versions = sorted((p.name for p in folder.iterdir() if (p / f"{name}.parquet").is_file()), key=_version_key) \
        if folder.is_dir() else []
    if not versions:
        raise InputError("--from-aiconfigurator", f"{system} has no measured {framework} table {op}/{name}")
    path = folder / versions[-1] / f"{name}.parquet"
    return Table(pd.read_parquet(path), path, framework, versions[-1])


def _spread(frame, limit: int, by: str):
    """At most ``limit`` rows of ``frame``, evenly over the distinct values of column ``by`` (deterministic)."""
    keys = sorted(frame[by].unique())
    per = max(1, limit // max(1, len(keys)))
    parts = [frame[frame[by] == k] for k in keys]
    return [row for part in parts for _, row in part.iloc[:: max(1, math.ceil(len(part) / per))].iterrows()][:limit]


def gemm_samples(table: Table, limit: int = MAX_SAMPLES["gemm"]) -> list[OpSample]:
    """bf16 ``torch.nn.functional.linear`` (older tables: ``vllm_default``) GEMMs ``[m, k] x [k, n]`` with ``n, k`` in :data:`GEMM_DIMS`:
    FLOPs ``2 m n k``, bytes ``2 (n k + m k + m n)`` (weight, input, output: the IR's linear op)."""
    d = table.rows
    plain = d.kernel_source.str.contains("linear") | (d.kernel_source == "vllm_default")  # older tables' name
    d = d[(d.gemm_dtype == "bfloat16") & plain & d.n.isin(GEMM_DIMS) & d.k.isin(GEMM_DIMS)]
    out = []
    for r in _spread(d.sort_values(["m", "n", "k"]), limit, "m"):
        m, n, k = int(r.m), int(r.n), int(r.k)
        out.append(OpSample("gemm", 2.0 * m * n * k, 2.0 * (n * k + m * k + m * n), float(r.latency) * 1e-3,
                            rows=m, label=f"gemm m={m} n={n} k={k}"))
    return out


#: Shortest prompt (prefill) and KV length (decode) kept: serving traces' contexts (ShareGPT's are mostly
#: 100-2,000 tokens); a decode kernel's per-sequence set-up dominates only at a handful of tokens.
MIN_CONTEXT = {"isl": 16, "step": 63}


def _attention_rows(table: Table, limit: int, by: str):
    d = table.rows
    kernels = sorted(d.kernel_source.unique())
    keep = ((d.kernel_source == kernels[0]) & (d.kv_cache_dtype == "bfloat16") & (d.head_dim == ATTN_HEAD_DIM)
            & (d.num_heads >= d.num_key_value_heads) & (d.num_heads >= 4) & (d.num_heads <= 64)
            & (d[by] >= MIN_CONTEXT[by]))
    if "window_size" in d.columns:
        keep &= d.window_size == 0
    return _spread(d[keep].sort_values([by, "batch_size", "num_heads"]), limit, by), kernels[0]


def attention_samples(context: Table, generation: Table) -> list[OpSample]:
    """Prefill (context) and decode (generation) attention with a bf16 KV cache, head dim 128, as the IR's
    attention op counts them: ``b`` sequences of ``q`` new tokens over a context of ``c``: FLOPs
    ``4 d h_q b (q c - q (q - 1) / 2)``, bytes ``2 b c h_kv d`` (K, V) ``+ 2 b q h_q d`` (Q, O), 2 bytes each.
    Generation rows' ``step`` is the KV length before the new token (context ``step + 1``)."""
    out = []
    for table, by, limit in ((context, "isl", MAX_SAMPLES["context"]),
                             (generation, "step", MAX_SAMPLES["generation"])):
        rows, kernel = _attention_rows(table, limit, by)
        for r in rows:
            b, hq, hkv, d = int(r.batch_size), int(r.num_heads), int(r.num_key_value_heads), int(r.head_dim)
            q, c = (int(r.isl), int(r.isl)) if by == "isl" else (1, int(r.step) + 1)
            flops = 4.0 * d * hq * b * (q * c - q * (q - 1) / 2)
            nbytes = 2.0 * (b * c * 2 * hkv * d + 2 * b * q * hq * d)
            out.append(OpSample("attention", flops, nbytes, float(r.latency) * 1e-3, seqs=b,
                                label=f"{by == 'isl' and 'prefill' or 'decode'} attention {kernel} b={b} q={q} "
                                      f"c={c} h={hq}/{hkv}"))
    return out


def allreduce_curves(system: str, framework: str = "vllm",
                     custom_max_bytes: int = 8 * 2**20) -> tuple[dict[int, list[tuple[float, float]]], str]:
    """Measured bf16 all-reduce time per GPU count: ``{gpus: [(bytes per rank, seconds), ...]}`` ascending
    in bytes, and where it came from. NCCL's table everywhere; on NVLink systems the engine's custom
    all-reduce (CUDA-graph backend) below ``custom_max_bytes``, where vLLM uses it (its ``max_size``, 8 MiB,
    ``vllm/distributed/device_communicators/custom_all_reduce.py``; vLLM disables it on PCIe-only GPUs
    beyond two, so PCIe systems use NCCL alone)."""
    nccl = load_table(system, "comm", "nccl_perf", "nccl")
    d = nccl.rows
    d = d[(d.op_name == "all_reduce") & (d.nccl_dtype == "half")]
    curves: dict[int, dict[float, float]] = {}
    for r in d.itertuples():
        curves.setdefault(int(r.num_gpus), {})[2.0 * r.message_size] = float(r.latency) * 1e-3
    source = nccl.cite()
    if system != "l40s":
        try:
            custom = load_table(system, "comm", "custom_allreduce_perf", framework)
        except InputError:
            custom = None
        if custom is not None:
            c = custom.rows
            c = c[c.backend.str.contains("graph")]
            for r in c.itertuples():
                nbytes = 2.0 * r.message_size
                if nbytes <= custom_max_bytes and int(r.num_gpus) in curves:
                    curves[int(r.num_gpus)][nbytes] = min(curves[int(r.num_gpus)].get(nbytes, math.inf),
                                                          float(r.latency) * 1e-3)
            source += f" and {custom.cite()} (CUDA-graph custom all-reduce up to {custom_max_bytes >> 20} MiB)"
    return {n: sorted(v.items()) for n, v in sorted(curves.items())}, source

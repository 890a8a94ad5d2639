"""The cluster the planner plans for: a GPU type, how many, how they are connected, host memory.

:class:`Cluster` also carries the alpha-beta communication model of DESIGN.md section 4:

- ring all-reduce of ``nbytes`` over ``n`` ranks: ``alpha(n) + 2 (n-1)/n * nbytes / (bw * link_efficiency)``
  with ``alpha(n) = collective_launch + latency * (n-1)`` (0 when ``n == 1``), or, inside a node, the GPU's
  measured curve for ``n`` ranks when its catalog entry has one (``allreduce_us``, ``allgather_us``: the
  achieved time falls with rank count on PCIe machines in a way one bandwidth cannot follow);
- ring all-gather of ``nbytes_total`` (the gathered result): ``alpha(n) + (n-1)/n * nbytes_total / (bw*eff)``;
- send/recv: ``collective_launch + latency + nbytes / (bw * eff)``;
- host -> device copy: ``nbytes / (host_link * eff)``.

``bw`` and ``latency`` are the intra-node GPU link, or the inter-node link when the group spans nodes.
Bandwidths are per GPU per direction (NVLink switch, per-GPU PCIe lanes, one NIC per GPU).

:func:`load_cluster` reads ``NxGPU`` shorthand (``8xA10``, ``64xH100-SXM``, ``3xcpu``) or a YAML/JSON
cluster file; bad input raises :class:`~seesaw.ir.errors.InputError` naming the file (or ``--cluster``)
and the field.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seesaw.ir.errors import InputError
from seesaw.planner.hardware.catalog import (
    GB,
    SOURCE_GROUPS,
    GPUSpec,
    LinkKind,
    get_gpu,
    load_catalog,
    validation_to_input_error,
)

SHORTHAND_SOURCE = "--cluster"
_SHORTHAND_RE = re.compile(r"^(\d+)\s*[xX]\s*([A-Za-z][\w.\- ]*)$")
# Inter-node link defaults per GPU (per direction) when a cluster file does not give one.
NODE_LINK_GB_PER_S = {"nvlink": 50.0, "pcie": 25.0}
NODE_LINK_LATENCY_US = 5.0
_NODE_LINK_SOURCE = ("default assumption, not measured: one NIC per GPU, 400 Gb/s (50 GB/s) for NVLink "
                     "entries (DGX H100-style), 200 Gb/s (25 GB/s) for PCIe entries; 5 us per hop (RDMA)")
_CUSTOM_DEFAULT_SOURCES = {
    "compute": "default dtype_bytes 2 (bf16)",
    "links": "default for custom GPUs: PCIe 16 GiB/s GPU and host links, as the A10 entry",
    "latency": "default for custom GPUs (estimate): 7 us launch + 5 us per hop, as the PCIe entries",
    "host": "default for custom GPUs: 80 GiB host memory per GPU, 8 GPUs per node, as the A10 entry",
    "efficiency": "planning assumption until calibrated (seesaw-calibrate)",
    "reserve": "default for custom GPUs: 2 GB (estimate within DESIGN.md section 4's 1-3.5 GB)",
}
_CUSTOM_GPU_REQUIRED = ("name", "memory_gb", "bf16_tflops", "memory_gb_per_s")
_FILE_KEYS = ("gpu", "num_gpus", "gpus_per_node", "gpu_link", "gpu_link_gb_per_s", "gpu_link_latency_us",
              "node_link_gb_per_s", "node_link_latency_us", "host_link_gb_per_s", "host_memory_gb")
_LINKS = ("pcie", "nvlink", "gloo")


class Cluster(BaseModel):
    """A homogeneous cluster: ``num_gpus`` of one :class:`GPUSpec`, ``gpus_per_node`` per node.

    Link figures are per GPU per direction in 1e9 bytes/s, latencies per ring hop in microseconds;
    ``host_memory_gb`` is per node (1e9 bytes). ``source`` maps each field to where its value came from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: GPUSpec
    num_gpus: int = Field(gt=0)
    gpus_per_node: int = Field(gt=0)
    gpu_link: LinkKind
    gpu_link_gb_per_s: float = Field(gt=0)
    gpu_link_latency_us: float = Field(ge=0)
    node_link_gb_per_s: float = Field(gt=0)
    node_link_latency_us: float = Field(ge=0)
    host_link_gb_per_s: float = Field(gt=0)
    host_memory_gb: float = Field(gt=0)
    source: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _whole_nodes(self) -> "Cluster":
        if self.num_gpus > self.gpus_per_node and self.num_gpus % self.gpus_per_node:
            raise ValueError(f"num_gpus {self.num_gpus} is not a multiple of gpus_per_node {self.gpus_per_node}")
        return self

    def __hash__(self) -> int:  # hashable despite the ``source`` dict (usable as a cache key)
        return hash((self.gpu, self.num_gpus, self.gpus_per_node, self.gpu_link, self.gpu_link_gb_per_s,
                     self.node_link_gb_per_s, self.host_link_gb_per_s, self.host_memory_gb))

    @property
    def num_nodes(self) -> int:
        """Number of nodes (``ceil(num_gpus / gpus_per_node)``)."""
        return -(-self.num_gpus // self.gpus_per_node)

    @property
    def host_memory_bytes(self) -> int:
        """Host memory per node, bytes."""
        return int(self.host_memory_gb * GB)

    def link_for(self, group_ranks: int, spans_nodes: bool = False) -> tuple[float, float]:
        """``(bytes_per_s, latency_s)`` of the link a group of ``group_ranks`` ranks communicates over.

        Raw figures (no ``link_efficiency``): the inter-node link when ``spans_nodes`` or when the group is
        larger than a node, else the intra-node GPU link. Raises ValueError when ``group_ranks < 1``.
        """
        if group_ranks < 1:
            raise ValueError(f"group_ranks must be >= 1, got {group_ranks}")
        if spans_nodes or group_ranks > self.gpus_per_node:
            return self.node_link_gb_per_s * GB, self.node_link_latency_us * 1e-6
        return self.gpu_link_gb_per_s * GB, self.gpu_link_latency_us * 1e-6

    def _alpha_s(self, n: int, latency_s: float) -> float:
        return self.gpu.collective_launch_us * 1e-6 + latency_s * (n - 1)

    def allreduce_s(self, nbytes: float, n: int, spans_nodes: bool = False) -> float:
        """Seconds for a ring all-reduce of ``nbytes`` (per rank) over ``n`` ranks; 0 when ``n == 1``.

        ``alpha(n) + 2 (n-1)/n * nbytes / (bw * link_efficiency)`` (DESIGN.md section 4). Raises ValueError
        for ``n < 1`` or ``nbytes < 0``.
        """
        _check(nbytes, n)
        if n == 1:
            return 0.0
        if not spans_nodes and n <= self.gpus_per_node:
            measured = self.gpu.curve_s("allreduce_us", n, nbytes)
            if measured is not None:
                return measured
        bw, lat = self.link_for(n, spans_nodes)
        return self._alpha_s(n, lat) + 2 * (n - 1) / n * nbytes / (bw * self.gpu.link_efficiency)

    def allgather_s(self, nbytes_total: float, n: int, spans_nodes: bool = False) -> float:
        """Seconds for a ring all-gather whose gathered result is ``nbytes_total``; 0 when ``n == 1``.

        ``alpha(n) + (n-1)/n * nbytes_total / (bw * link_efficiency)``. Raises ValueError as allreduce_s.
        """
        _check(nbytes_total, n)
        if n == 1:
            return 0.0
        if not spans_nodes and n <= self.gpus_per_node:
            measured = self.gpu.curve_s("allgather_us", n, nbytes_total)
            if measured is not None:
                return measured
        bw, lat = self.link_for(n, spans_nodes)
        return self._alpha_s(n, lat) + (n - 1) / n * nbytes_total / (bw * self.gpu.link_efficiency)

    def send_recv_s(self, nbytes: float, spans_nodes: bool = False) -> float:
        """Seconds for one point-to-point transfer of ``nbytes``: ``launch + latency + nbytes / (bw*eff)``."""
        _check(nbytes, 2)
        bw, lat = self.link_for(2, spans_nodes)
        return self.gpu.collective_launch_us * 1e-6 + lat + nbytes / (bw * self.gpu.link_efficiency)

    def host_to_device_s(self, nbytes: float) -> float:
        """Seconds to copy ``nbytes`` between pinned host memory and one GPU (either direction)."""
        _check(nbytes, 1)
        return nbytes / (self.host_link_gb_per_s * GB * self.gpu.link_efficiency)


def _check(nbytes: float, n: int) -> None:
    if n < 1:
        raise ValueError(f"number of ranks must be >= 1, got {n}")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")


def _number(key: str, value: Any, source: str, *, integer: bool = False, allow_zero: bool = False) -> float:
    """``value`` checked as a positive (or non-negative) number; InputError naming ``key`` otherwise."""
    kind = "integer" if integer else "number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise InputError(key, f"must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value!r}",
                         source)
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}", source)
    return value


def _custom_gpu(raw: dict, source: str) -> GPUSpec:
    allowed = set(GPUSpec.model_fields)
    for key in raw:
        if key not in allowed:
            raise InputError(f"gpu.{key}", f"unknown key (allowed: {', '.join(GPUSpec.model_fields)})", source)
    for key in _CUSTOM_GPU_REQUIRED:
        if key not in raw:
            raise InputError(f"gpu.{key}", "missing (required for a custom GPU)", source)
    for key, value in raw.items():
        if key.endswith(("_gb", "_gb_per_s", "_tflops", "_us", "_efficiency")) or key in ("gpus_per_node",):
            _number(f"gpu.{key}", value, source, integer=key == "gpus_per_node", allow_zero=key.endswith("_us"))
    given = {group: f"cluster file {source}" if any(f in raw for f in fields) else _CUSTOM_DEFAULT_SOURCES[group]
             for group, fields in SOURCE_GROUPS.items()}
    user_sources = raw.get("source") or {}
    if not isinstance(user_sources, dict):
        raise InputError("gpu.source", "must be a mapping of figure group -> where the figures came from", source)
    try:
        return GPUSpec(**{**raw, "source": {**given, **user_sources}})
    except ValidationError as e:
        raise validation_to_input_error(e, source, prefix="gpu.") from None


def build_cluster(gpu: GPUSpec, num_gpus: int, source: str, origin: str, gpu_origin: str | None = None,
                  **given: Any) -> Cluster:
    """A :class:`Cluster` of ``num_gpus`` x ``gpu``; fields not in ``given`` default from the catalog.

    Defaults: ``gpus_per_node = min(num_gpus, gpu.gpus_per_node)`` (a given value is capped at num_gpus
    too), the catalog's link figures, ``host_memory_gb = host_memory_gb_per_gpu * gpus_per_node``, and an
    inter-node link of 50 GB/s per GPU for NVLink entries, 25 for PCIe entries, the gloo link for ``cpu``
    (all ranks on one machine), 5 us per hop. A ``gpu_link`` or ``gpu_link_gb_per_s`` other than the GPU's own
    drops its measured collective curves (they belong to its link). ``origin`` names where given values came from (and
    ``gpu_origin`` where the GPU did; default its catalog entry); ``source`` is the InputError source. Raises InputError for non-positive numbers, an unknown ``gpu_link``,
    a changed ``gpu_link`` without ``gpu_link_gb_per_s``, or ``num_gpus`` not a multiple of
    ``gpus_per_node`` when it exceeds it.
    """
    _number("num_gpus", num_gpus, source, integer=True)
    for key, value in given.items():
        if key == "gpu_link":
            if value not in _LINKS:
                raise InputError(key, f"must be one of {', '.join(_LINKS)}, got {value!r}", source)
        else:
            _number(key, value, source, integer=key == "gpus_per_node", allow_zero=key.endswith("_us"))
    link = given.get("gpu_link", gpu.link)
    if link != gpu.link and "gpu_link_gb_per_s" not in given:
        raise InputError("gpu_link_gb_per_s", f"required when gpu_link ({link}) differs from {gpu.name}'s "
                         f"default link ({gpu.link})", source)
    restated = given.get("gpu_link_gb_per_s", gpu.gpu_link_gb_per_s) != gpu.gpu_link_gb_per_s
    if (link != gpu.link or restated) and (gpu.allreduce_us or gpu.allgather_us):
        # the GPU's measured collective curves belong to its catalog link: a cluster that states another one
        # gets the alpha-beta model of the link it states
        gpu = gpu.model_copy(update={"allreduce_us": {}, "allgather_us": {}})
    per_node = min(num_gpus, given.get("gpus_per_node", gpu.gpus_per_node))
    if num_gpus > per_node and num_gpus % per_node:
        raise InputError("num_gpus", f"{num_gpus} is not a multiple of gpus_per_node {per_node}", source)
    catalog = gpu_origin or f"catalog entry {gpu.name}"
    gpu_bw = given.get("gpu_link_gb_per_s", gpu.gpu_link_gb_per_s)
    gpu_lat = given.get("gpu_link_latency_us", gpu.gpu_link_latency_us)
    if link == "gloo":
        node_bw, node_lat = gpu_bw, gpu_lat
        node_src = "same as the gloo GPU link (all ranks are processes on one machine)"
    else:
        node_bw, node_lat, node_src = NODE_LINK_GB_PER_S[link], NODE_LINK_LATENCY_US, _NODE_LINK_SOURCE
    values = {
        "gpus_per_node": (per_node, f"min(num_gpus, {catalog})"),
        "gpu_link": (link, catalog),
        "gpu_link_gb_per_s": (gpu_bw, catalog),
        "gpu_link_latency_us": (gpu_lat, catalog),
        "node_link_gb_per_s": (node_bw, node_src),
        "node_link_latency_us": (node_lat, node_src),
        "host_link_gb_per_s": (gpu.host_link_gb_per_s, catalog),
        "host_memory_gb": (gpu.host_memory_gb_per_gpu * per_node, f"host_memory_gb_per_gpu x gpus_per_node "
                           f"({catalog})"),
    }
    fields = {k: (per_node if k == "gpus_per_node" else given.get(k, v)) for k, (v, _) in values.items()}
    sources = {k: (origin if k in given else s) for k, (_, s) in values.items()}
    sources["gpu"] = catalog
    sources["num_gpus"] = origin
    try:
        return Cluster(gpu=gpu, num_gpus=num_gpus, source=sources, **fields)
    except ValidationError as e:
        raise validation_to_input_error(e, source) from None


def _load_shorthand(spec: str) -> Cluster:
    m = _SHORTHAND_RE.match(spec.strip())
    if not m:
        raise InputError("cluster", f"'{spec}' is neither NxGPU shorthand (e.g. 8xA10, 64xH100-SXM, 3xcpu) "
                         "nor a .yaml/.yml/.json cluster file", SHORTHAND_SOURCE)
    try:
        gpu = get_gpu(m.group(2))
    except InputError as e:
        raise e.with_source(SHORTHAND_SOURCE) from None
    num = int(m.group(1))
    return build_cluster(gpu, num, SHORTHAND_SOURCE, f"--cluster {spec.strip()}")


def _read_file(path: Path) -> dict:
    src = str(path)
    if not path.exists():
        raise InputError("cluster", "file not found", src)
    if not path.is_file():
        raise InputError("cluster", "not a file (expected a YAML or JSON cluster file)", src)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("cluster", f"cannot read: {e}", src) from None
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError("cluster", f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", src) from None
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise InputError("cluster", f"malformed YAML{where}: {getattr(e, 'problem', None) or e}", src) from None
    if not isinstance(raw, dict):
        raise InputError("cluster", f"must be a mapping with keys {', '.join(_FILE_KEYS)}", src)
    return raw


def _looks_like_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".yaml", ".yml", ".json") or "/" in spec or "\\" in spec


def _profile_gpu(path: Path, source: str) -> tuple[GPUSpec, str]:
    """The one entry of a profile (a catalog file, e.g. written by ``seesaw-calibrate``) named by a cluster
    file's ``gpu:``, relative to the cluster file's folder; InputError naming the profile otherwise."""
    if not path.is_file():
        raise InputError("gpu", f"profile file '{path}' not found", source)
    entries = load_catalog(path)
    if len(entries) != 1:
        raise InputError("gpu", f"profile file '{path}' holds {len(entries)} entries ({', '.join(entries)}); "
                         "name one GPU per profile file", source)
    gpu = next(iter(entries.values()))
    return gpu, f"profile {path} ({gpu.name})"


def _load_file(path: Path) -> Cluster:
    src = str(path)
    raw = _read_file(path)
    for key in raw:
        if key not in _FILE_KEYS:
            raise InputError(str(key), f"unknown key (allowed: {', '.join(_FILE_KEYS)})", src)
    for key in ("gpu", "num_gpus"):
        if key not in raw:
            raise InputError(key, "missing (required)", src)
    gpu_raw = raw["gpu"]
    if isinstance(gpu_raw, str) and _looks_like_file(gpu_raw):
        gpu, gpu_origin = _profile_gpu(path.parent / gpu_raw, src)
    elif isinstance(gpu_raw, str):
        try:
            gpu = get_gpu(gpu_raw)
        except InputError as e:
            raise e.with_source(src) from None
        gpu_origin = None
    elif isinstance(gpu_raw, dict):
        gpu = _custom_gpu(gpu_raw, src)
        gpu_origin = f"cluster file {src} (custom GPU)"
    else:
        raise InputError("gpu", f"must be a catalog GPU name or a mapping, got {gpu_raw!r}", src)
    given = {k: v for k, v in raw.items() if k not in ("gpu", "num_gpus")}
    return build_cluster(gpu, raw["num_gpus"], src, f"cluster file {src}", gpu_origin, **given)


def load_cluster(spec: str) -> Cluster:
    """The cluster named by ``spec``: ``NxGPU`` shorthand or a path to a YAML/JSON cluster file.

    A spec is read as a file when it ends in ``.yaml``/``.yml``/``.json``, contains a path separator, or
    names an existing path. File keys: ``gpu`` (catalog name/alias; a profile file of one catalog entry, as
    ``seesaw-calibrate`` writes, by a path ending in ``.yaml``/``.yml``/``.json`` relative to the cluster
    file; or a mapping with at least ``name``, ``memory_gb``, ``bf16_tflops``, ``memory_gb_per_s`` and
    optionally any other :class:`GPUSpec` field),
    ``num_gpus`` (required), and optionally ``gpus_per_node``, ``gpu_link``, ``gpu_link_gb_per_s``,
    ``gpu_link_latency_us``, ``node_link_gb_per_s``, ``node_link_latency_us``, ``host_link_gb_per_s``,
    ``host_memory_gb`` (per node); defaults as :func:`build_cluster`.

    Raises InputError (source = the file path, or ``--cluster`` for shorthand) for a missing file,
    malformed YAML/JSON, an unknown GPU, an unknown key, a non-positive number, a bad shorthand, or
    ``num_gpus`` not a multiple of ``gpus_per_node``.
    """
    spec = str(spec)
    path = Path(spec)
    looks_like_file = path.suffix.lower() in (".yaml", ".yml", ".json") or "/" in spec or "\\" in spec
    if looks_like_file or (spec.strip() and path.exists()):
        return _load_file(path)
    return _load_shorthand(spec)

"""Model configuration: the architecture facts the IR needs, parsed from a Hugging Face ``config.json``.

``load_model_config("llama-2-70b")`` reads a shipped example (``examples/models/*.json``, matched
case-insensitively by file stem); ``load_model_config("path/to/config.json")`` or a folder holding a
``config.json`` reads a user's file; ``load_model_config("meta-llama/Llama-2-70b-hf")`` (a Hugging Face id
that is not a local path) reads the model's ``config.json`` from the local Hugging Face cache
(:mod:`seesaw.ir.hf_cache`; nothing is downloaded). Every problem with the file raises :class:`InputError`
naming the file and the field.

Field meanings follow the Hugging Face ``transformers`` configuration classes (``LlamaConfig``,
``MistralConfig``, ``Qwen2Config``, ``Qwen3Config``) and their modeling code, which decides which
projections carry biases and norms:

- Llama (also CodeLlama, SmolLM2): q/k/v/o biases iff ``attention_bias``; gate/up/down biases iff
  ``mlp_bias``.
- Mistral: no biases at all.
- Qwen2: q/k/v always have a bias, o_proj never.
- Qwen3: q/k/v/o biases iff ``attention_bias``; per-head ``q_norm``/``k_norm`` RMSNorm of shape
  ``[head_dim]``; ``head_dim`` defaults to 128 (``Qwen3Config``) rather than ``hidden / heads``.
- Mixtral (mixture of experts): Mistral's attention; every layer's MLP is ``num_local_experts`` gated experts
  of width ``intermediate_size``, of which a router picks ``num_experts_per_tok`` per token and always
  renormalizes their softmax weights (``MixtralSparseMoeBlock``).
- Qwen3-MoE: Qwen3's attention (``head_dim`` defaults to ``hidden / heads``: ``Qwen3MoeConfig`` has no default);
  ``num_experts`` experts of width ``moe_intermediate_size``, top
  ``num_experts_per_tok``, renormalized iff ``norm_topk_prob``. Layers listed in ``mlp_only_layers`` or off the
  ``decoder_sparse_step`` are dense in transformers; such mixed models are refused until the planner costs
  layers of two kinds.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from seesaw.ir.errors import InputError
from seesaw.ir.hf_cache import cached_hf_config, download_hint, hf_hub_cache_dir, looks_like_hf_id
from seesaw.ir.quant import WeightQuant, parse_quantization

SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "MixtralForCausalLM",
    "Qwen3MoeForCausalLM",
)
MOE_ARCHITECTURES: tuple[str, ...] = ("MixtralForCausalLM", "Qwen3MoeForCausalLM")

# Bytes per element of the checkpoint's declared dtype (``torch_dtype`` or, in newer files, ``dtype``).
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}

_REQUIRED_INTS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)


class ModelConfig(BaseModel):
    """A decoder-only transformer's shape, immutable. Sizes are element counts, not bytes.

    ``head_dim`` is the per-head width ``d``; the q projection has ``num_attention_heads * head_dim``
    outputs, k and v ``num_key_value_heads * head_dim``. ``qkv_bias``: q/k/v projections have biases;
    ``attention_bias``: o_proj has a bias too (Llama/Qwen3 ``attention_bias``); ``mlp_bias``: gate/up/down
    have biases (Llama only); ``qk_norm``: Qwen3's per-head q/k RMSNorm. ``dtype_bytes`` is 2 for
    fp16/bf16 checkpoints, 4 for float32. Mixture of experts: ``num_experts`` (0: a dense model) experts of
    FFN width ``moe_intermediate_size`` in every layer, ``num_experts_per_tok`` of them per token, their
    router weights renormalized to sum to 1 iff ``norm_topk_prob``. ``quantization``: how the linear weights
    are stored (:mod:`seesaw.ir.quant`; None: in the checkpoint dtype); ``kv_cache_dtype``: ``auto`` (the compute
    dtype) or an FP8 KV cache (``fp8_e4m3``, ``fp8_e5m2``: 1 byte per element), a serving choice, not the
    checkpoint's (``--kv-cache-dtype``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qkv_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int
    dtype_bytes: int = 2
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    quantization: WeightQuant | None = None
    kv_cache_dtype: Literal["auto", "fp8_e4m3", "fp8_e5m2"] = "auto"

    @property
    def kv_cache_dtype_bytes(self) -> int | None:
        """Bytes per KV-cache element: 1 for an FP8 cache, None for ``auto`` (the compute dtype's)."""
        return None if self.kv_cache_dtype == "auto" else 1

    @property
    def q_size(self) -> int:
        """Width of the q projection output: ``num_attention_heads * head_dim``."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of the k (or v) projection output: ``num_key_value_heads * head_dim``."""
        return self.num_key_value_heads * self.head_dim

    def fingerprint(self) -> dict[str, Any]:
        """Architecture, every dimension and flag that fixes tensor shapes, and the dtype width.

        Two configs with equal fingerprints accept the same checkpoint; the runtime refuses a checkpoint
        whose fingerprint differs (DESIGN.md section 3). ``name``, ``rope_theta``, ``rms_norm_eps`` and
        ``max_position_embeddings`` are left out: they do not change any weight's shape.
        """
        keys = (
            "architecture", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
            "tie_word_embeddings", "attention_bias", "qkv_bias", "mlp_bias", "qk_norm", "dtype_bytes",
        )
        if self.is_moe:  # dense fingerprints keep their keys, so plans written before MoE still match
            keys += ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob")
        out = {k: getattr(self, k) for k in keys}
        if self.quantization is not None:  # stored tensors' names, shapes and dtypes (unquantized keys unchanged)
            out["quantization"] = self.quantization.model_dump(mode="json")
        if self.kv_cache_dtype != "auto":  # the KV cache's dtype (not a checkpoint property: the runtime skips it)
            out["kv_cache_dtype"] = self.kv_cache_dtype
        return out

    @property
    def is_moe(self) -> bool:
        """Whether the MLPs are mixtures of experts."""
        return self.num_experts > 0

    @classmethod
    def from_hf_dict(cls, data: Any, *, name: str, source: str | None = None) -> "ModelConfig":
        """Build from the parsed JSON object of a Hugging Face ``config.json``.

        Raises :class:`InputError` (attributed to ``source``) for an unsupported architecture, a
        ``quantization_config`` :func:`~seesaw.ir.quant.parse_quantization` refuses, a missing or
        non-positive required size, heads not dividing ``hidden_size`` when ``head_dim`` is absent, KV
        heads not dividing heads, or an unknown dtype.
        """
        try:
            return _parse(data, name)
        except InputError as err:
            if not source:
                raise
            raise err.with_source(source) from None


def _positive_int(data: dict, key: str, *, required: bool = True) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InputError(key, "missing (a positive integer is required)")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(key, f"{value!r} is not an integer")
    if value <= 0:
        raise InputError(key, f"must be positive, got {value}")
    return value


def _flag(data: dict, key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(key, f"{value!r} is not true/false")
    return value


def _number(data: dict, key: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(key, f"{value!r} is not a positive number")
    return float(value)


def _rope_theta(data: dict) -> float:
    if data.get("rope_theta") is not None:
        return _number(data, "rope_theta", 10000.0)
    params = data.get("rope_parameters")  # transformers >= 5 nests it here
    if isinstance(params, dict) and params.get("rope_theta") is not None:
        try:
            return _number(params, "rope_theta", 10000.0)
        except InputError as err:
            raise InputError("rope_parameters.rope_theta", err.problem) from None
    return 10000.0


def _dtype_bytes(data: dict) -> int:
    for key in ("torch_dtype", "dtype"):
        value = data.get(key)
        if value is None:
            continue
        text = str(value).removeprefix("torch.")
        if text not in _DTYPE_BYTES:
            raise InputError(key, f"'{value}' is not supported (supported: {', '.join(_DTYPE_BYTES)})")
        return _DTYPE_BYTES[text]
    return 2


def _parse(data: Any, name: str) -> ModelConfig:
    if not isinstance(data, dict):
        raise InputError("config", f"expected a JSON object, got {type(data).__name__}")
    archs = data.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise InputError("architectures", f"missing or not a list of names (got {archs!r})")
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise InputError(
            "architectures", f"'{arch}' is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    quant = parse_quantization(data)
    dims = {key: _positive_int(data, key) for key in _REQUIRED_INTS}
    hidden, heads = dims["hidden_size"], dims["num_attention_heads"]
    kv_heads = _positive_int(data, "num_key_value_heads", required=False) or heads
    head_dim = _positive_int(data, "head_dim", required=False)
    if head_dim is None:
        if arch == "Qwen3ForCausalLM":
            head_dim = 128  # Qwen3Config's default, used by transformers when the file omits it
        elif hidden % heads:
            raise InputError(
                "num_attention_heads",
                f"{heads} does not divide hidden_size {hidden} and head_dim is not given",
            )
        else:
            head_dim = hidden // heads
    if heads % kv_heads:
        raise InputError("num_key_value_heads",
                         f"{kv_heads} does not divide num_attention_heads {heads}")

    moe = _moe_fields(data, arch, dims["intermediate_size"]) if arch in MOE_ARCHITECTURES else {}
    qwen3 = arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM")
    honors_attention_bias = arch in ("LlamaForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM")
    attention_bias = _flag(data, "attention_bias") if honors_attention_bias else False
    qkv_bias = attention_bias or arch == "Qwen2ForCausalLM"
    mlp_bias = _flag(data, "mlp_bias") if arch == "LlamaForCausalLM" else False
    return ModelConfig(
        name=name,
        architecture=arch,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        tie_word_embeddings=_flag(data, "tie_word_embeddings"),
        attention_bias=attention_bias,
        qkv_bias=qkv_bias,
        mlp_bias=mlp_bias,
        qk_norm=qwen3,
        rms_norm_eps=_number(data, "rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(data),
        dtype_bytes=_dtype_bytes(data),
        quantization=quant,
        **dims,
        **moe,
    )


def _moe_fields(data: dict, arch: str, intermediate: int) -> dict:
    """The expert fields of a Mixtral or Qwen3-MoE config (see the module docstring)."""
    # transformers >= 5 writes either model's expert count as num_local_experts (an alias of num_experts)
    count_key = next((k for k in ("num_local_experts", "num_experts") if data.get(k) is not None),
                     "num_local_experts" if arch == "MixtralForCausalLM" else "num_experts")
    experts = _positive_int(data, count_key)
    if arch == "MixtralForCausalLM":
        width, normalize = intermediate, True
    else:
        width = _positive_int(data, "moe_intermediate_size")
        normalize = _flag(data, "norm_topk_prob")
        dense = data.get("mlp_only_layers") or []
        step = data.get("decoder_sparse_step", 1)
        if dense or step not in (None, 1):
            raise InputError("mlp_only_layers" if dense else "decoder_sparse_step",
                             "layers with a dense MLP between mixture-of-experts layers are not supported yet")
    top_k = _positive_int(data, "num_experts_per_tok")
    if top_k > experts:
        raise InputError("num_experts_per_tok", f"{top_k} exceeds the {experts} experts")
    return {"num_experts": experts, "num_experts_per_tok": top_k, "moe_intermediate_size": width,
            "norm_topk_prob": normalize}


def _examples_dir():
    return resources.files("seesaw.examples") / "models"


def list_examples() -> list[str]:
    """Names (file stems) of the shipped example configs under ``examples/models/``, sorted."""
    return sorted(
        (p.name[: -len(".json")] for p in _examples_dir().iterdir() if p.name.endswith(".json")),
        key=str.lower,
    )


def _find_example(spec: str):
    wanted = spec.lower().removesuffix(".json")
    for entry in _examples_dir().iterdir():
        if entry.name.endswith(".json") and entry.name[: -len(".json")].lower() == wanted:
            return entry
    return None


def load_model_config(spec: str | Path, frontend: str = "config") -> ModelConfig:
    """Load a :class:`ModelConfig` from a ``config.json`` path, a folder holding one, a Hugging Face model id
    in the local cache, or an example name.

    A path ending in ``.onnx`` is read by the ONNX frontend, and ``frontend="torch-export"`` derives the config
    from the ``torch.export`` of the model class on the meta device (:mod:`seesaw.ir.frontends`).

    A path that exists is read as given; otherwise an ``org/name`` id (exactly one ``/``,
    :func:`~seesaw.ir.hf_cache.looks_like_hf_id`) is looked up in the local Hugging Face cache
    (:func:`~seesaw.ir.hf_cache.cached_hf_config`, ``main`` revision); otherwise ``spec`` is matched
    (case-insensitively, ``.json`` optional) against the shipped example names (:func:`list_examples`). The
    config's ``name`` is the example name, the id's ``name`` part, the folder name for
    ``<folder>/config.json``, or else the file stem.

    Raises :class:`InputError`: field ``model`` when nothing matches, a folder has no ``config.json``, or an
    id is not in the cache (the problem says how to download it); field ``config`` when the file cannot be
    read or is not valid JSON; otherwise the offending field, with the file as source.
    """
    if frontend != "config" or Path(spec).suffix.lower() == ".onnx":
        from seesaw.ir.frontends import load_with_frontend  # noqa: PLC0415 (needs torch or onnx)

        return load_with_frontend(spec, frontend)
    data, name, source = read_hf_config(spec)
    return ModelConfig.from_hf_dict(data, name=name, source=source)


def read_hf_config(spec: str | Path) -> tuple[Any, str, str]:
    """``(data, name, source)``: the parsed ``config.json`` object that ``spec`` names, resolved and named as
    :func:`load_model_config` describes, and the file to attribute errors to. Raises :class:`InputError` as
    :func:`load_model_config` does for a name that matches nothing or a file that cannot be read or parsed."""
    path = Path(spec)
    if looks_like_hf_id(str(spec)) and not path.exists():
        cached = cached_hf_config(str(spec))
        if cached is None:
            raise InputError("model", f"'{spec}' is neither a local file or folder nor in the Hugging Face cache "
                             f"{hf_hub_cache_dir()}: {download_hint(str(spec))}")
        return _read_config(cached, str(spec).split("/")[1], str(cached))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError("model", f"folder '{path}' has no config.json")
        path = path / "config.json"
    if path.is_file():
        name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
        source = str(path)
    else:
        entry = _find_example(str(spec))
        looks_like_path = path.suffix == ".json" or len(path.parts) > 1
        if entry is None and looks_like_path:
            raise InputError("model", "no such file or folder", str(spec))
        if entry is None:
            raise InputError(
                "model",
                f"'{spec}' is neither an existing file or folder nor a shipped example "
                f"(examples: {', '.join(list_examples())})",
            )
        return _read_config(entry, entry.name[: -len(".json")], f"examples/models/{entry.name}")
    return _read_config(path, name, source)


def _read_config(path, name: str, source: str) -> tuple[Any, str, str]:
    """Parse the config file at ``path`` (a path or a package resource) as model ``name``: ``(data, name,
    source)``; errors name ``source``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError("config", f"cannot read file: {err}", source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError("config", f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}",
                         source) from None
    return data, name, source

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
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from seesaw.ir.errors import InputError
from seesaw.ir.hf_cache import cached_hf_config, download_hint, hf_hub_cache_dir, looks_like_hf_id

SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)

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
    fp16/bf16 checkpoints, 4 for float32.
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
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_hf_dict(cls, data: Any, *, name: str, source: str | None = None) -> "ModelConfig":
        """Build from the parsed JSON object of a Hugging Face ``config.json``.

        Raises :class:`InputError` (attributed to ``source``) for an unsupported architecture, quantized
        weights (``quantization_config``: AWQ, GPTQ, FP8, ...), a missing or
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
    quant = data.get("quantization_config")
    if quant is not None:
        method = quant.get("quant_method", "unknown") if isinstance(quant, dict) else "unknown"
        raise InputError("quantization_config", f"'{method}' quantized weights are not supported yet: their bytes and "
                         "compute differ from the dense dtype the planner would assume; use the unquantized model's "
                         "config.json")
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

    honors_attention_bias = arch in ("LlamaForCausalLM", "Qwen3ForCausalLM")
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
        qk_norm=arch == "Qwen3ForCausalLM",
        rms_norm_eps=_number(data, "rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(data),
        dtype_bytes=_dtype_bytes(data),
        **dims,
    )


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


def load_model_config(spec: str | Path) -> ModelConfig:
    """Load a :class:`ModelConfig` from a ``config.json`` path, a folder holding one, a Hugging Face model id
    in the local cache, or an example name.

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


def _read_config(path, name: str, source: str) -> ModelConfig:
    """Parse the config file at ``path`` (a path or a package resource) as model ``name``; errors name
    ``source``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError("config", f"cannot read file: {err}", source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError("config", f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}",
                         source) from None
    return ModelConfig.from_hf_dict(data, name=name, source=source)

"""Checkpoint reading for the runtime: each worker reads exactly its weight shards, by tensor name.

A checkpoint is a Hugging Face folder: ``config.json`` plus ``*.safetensors`` (one file, or shards listed in
``model.safetensors.index.json``). :func:`prepare_checkpoint` also accepts a ``.gguf`` file and dequantizes it
once into a cached folder of that form. :class:`Checkpoint` reads a tensor, or one slice of it along one
dimension (a plan's :class:`~seesaw.codegen.plan.ShardSlice`), through ``safetensors``' memory-mapped
``get_slice``, so a rank never materializes tensors or slices it does not hold (DESIGN.md sections 2, 3).
:func:`check_fingerprint` refuses a checkpoint whose architecture or shapes differ from the plan's before any
weight is read. This module never imports ``seesaw.planner``: the plan file is the only contract.
"""
from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from seesaw.codegen.plan import ShardSlice
from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.ir.graph import build_graph
from seesaw.runtime.assets import cache_root
from seesaw.runtime.quantized import check_runnable, dequantize

INDEX_FILE = "model.safetensors.index.json"
GGUF_MAGIC = b"GGUF"  # first 4 bytes of every GGUF file (ggml docs/gguf.md, "File Structure")
_MIB = 1 << 20
_TIED_HEAD, _EMBED = "lm_head.weight", "model.embed_tokens.weight"
# the runtime computes in its own dtype, and keeps its KV cache in it (an FP8 KV cache is a serving choice)
_IGNORED_FINGERPRINT_KEYS = frozenset({"dtype_bytes", "name", "kv_cache_dtype"})


# -- preparing a folder --------------------------------------------------------------------------------------
def prepare_checkpoint(path: str | Path) -> Path:
    """The Hugging Face checkpoint folder for ``path``.

    - A folder with ``config.json`` and safetensors files is validated (config parses, every safetensors
      header reads, an index's shard files exist) and returned as is.
    - A GGUF file is dequantized once to float32 into ``<cache_root()>/gguf/<key>/`` (``key`` = sha256 of the
      file size and its first and last MiB) with ``transformers`` ``from_pretrained(dir, gguf_file=name)``
      then ``save_pretrained(safe_serialization=True)``, tokenizer included. The folder is written under a
      temporary name and renamed into place, so a concurrent run never sees a half-written folder; later
      calls return the cached folder without touching ``transformers``. Converting needs ``transformers``,
      ``gguf`` and ``accelerate``; SmolLM2-135M takes ~20 s and ~540 MB of disk.

    Raises :class:`InputError` with the path as source: missing path; folder without ``config.json`` or
    without safetensors files; malformed ``config.json`` or index; unreadable safetensors header; a file that
    is not GGUF; a GGUF file ``transformers`` cannot convert.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError("checkpoint", "no such file or folder", str(p))
    if p.is_dir():
        _scan(p)
        return p
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise InputError("checkpoint", f"cannot read file: {err}", str(p)) from None
    if magic != GGUF_MAGIC:
        raise InputError("checkpoint", f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); "
                         "expected a .gguf file or a folder with config.json and *.safetensors", str(p))
    return _cached_gguf_folder(p)


def gguf_cache_key(path: Path) -> str:
    """sha256 hex digest of ``"<size in bytes>\\n"`` + the file's first MiB + its last MiB: a content key that
    costs two reads, whatever the file size."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}\n".encode())
    with path.open("rb") as f:
        h.update(f.read(_MIB))
        f.seek(max(0, size - _MIB))
        h.update(f.read(_MIB))
    return h.hexdigest()


def _cached_gguf_folder(src: Path) -> Path:
    parent = cache_root() / "gguf"
    final = parent / gguf_cache_key(src)
    if (final / "config.json").is_file():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{final.name[:16]}-", suffix=".tmp"))
    try:
        try:
            _convert_gguf(src, tmp)
        except InputError:
            raise
        except Exception as err:  # transformers raises ValueError/KeyError/RuntimeError for unsupported files
            raise InputError("checkpoint", f"cannot convert GGUF file: {type(err).__name__}: {err}",
                             str(src)) from err
        _scan(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any other
        try:
            tmp.rename(final)  # atomic; fails when a concurrent run renamed its own folder first
        except OSError as err:
            if not (final / "config.json").is_file():
                raise InputError("checkpoint", f"cannot move the converted folder into the cache ({err}); "
                                 f"delete '{final}' if it is a leftover", str(src)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(src: Path, out: Path) -> None:
    """Dequantize GGUF file ``src`` to a float32 Hugging Face folder ``out`` (model + tokenizer)."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    major_minor = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    kwargs["dtype" if major_minor >= (4, 56) else "torch_dtype"] = torch.float32  # renamed in 4.56
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None and "dequantize" in inspect.signature(gguf_config).parameters:
        # transformers >= 5 otherwise keeps a GGUF quantizer attached and refuses save_pretrained
        kwargs["quantization_config"] = gguf_config(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, **kwargs)
    if getattr(model, "hf_quantizer", None) is not None:
        raise InputError("checkpoint", "transformers kept the GGUF weights quantized; cannot save them "
                         "as float32 safetensors", str(src))
    model.save_pretrained(str(out), safe_serialization=True)
    del model
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name, local_files_only=True)
    tok.save_pretrained(str(out))


def _read_json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(field, f"cannot read file: {err}", str(path)) from None
    except json.JSONDecodeError as err:
        raise InputError(field, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}",
                         str(path)) from None
    if not isinstance(data, dict):
        raise InputError(field, f"expected a JSON object, got {type(data).__name__}", str(path))
    return data


def _scan(folder: Path) -> tuple[dict, dict[str, Path], dict[str, tuple[int, ...]]]:
    """``(config, tensor name -> file, tensor name -> shape)`` of a checkpoint folder, validating it."""
    src = str(folder)
    if not (folder / "config.json").is_file():
        hint = " (a .gguf file must be passed as the file itself)" if any(folder.glob("*.gguf")) else ""
        raise InputError("checkpoint", f"folder has no config.json{hint}", src)
    config = _read_json(folder / "config.json", "config.json")
    index: dict | None = None
    if (folder / INDEX_FILE).is_file():
        weight_map = _read_json(folder / INDEX_FILE, INDEX_FILE).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError(INDEX_FILE, "'weight_map' is missing or not an object of tensor -> file name",
                             str(folder / INDEX_FILE))
        index = weight_map
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.is_file():
                raise InputError(INDEX_FILE, f"weight_map names shard '{f.name}', which does not exist", src)
    else:
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise InputError("checkpoint", "folder has no *.safetensors files (save the model with "
                             "save_pretrained(safe_serialization=True))", src)
    where: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                for name in handle.keys():
                    if name not in where:
                        where[name] = f
                        shapes[name] = tuple(handle.get_slice(name).get_shape())
        except (SafetensorError, OSError) as err:
            raise InputError(f.name, f"unreadable safetensors header: {err}", src) from None
    for name, file_name in (index or {}).items():
        if where.get(name) != folder / file_name:
            raise InputError(INDEX_FILE, f"weight_map puts '{name}' in '{file_name}', which does not hold it",
                             src)
    return config, where, shapes


# -- reading ---------------------------------------------------------------------------------------------------
class Checkpoint:
    """Read-only access to one Hugging Face checkpoint folder, tensor by tensor and slice by slice.

    ``Checkpoint(folder)`` validates the folder like :func:`prepare_checkpoint` (pass a GGUF file through
    :func:`prepare_checkpoint` first) and reads only the safetensors headers. Attributes: ``folder`` (Path),
    ``config`` (the parsed ``config.json`` dict). File handles open lazily on the first read and are kept
    (memory-mapped) until :meth:`close`; the object pickles without them, so it can be sent to a worker.

    Tied embeddings: when ``config["tie_word_embeddings"]`` is true and the files hold no ``lm_head.weight``,
    that name reads ``model.embed_tokens.weight`` (the IR itself names the tied head after the embedding).

    Raises :class:`InputError` (source = the folder) as :func:`prepare_checkpoint` does.
    """

    def __init__(self, folder: str | Path) -> None:
        path = Path(folder).expanduser()
        if not path.exists():
            raise InputError("checkpoint", "no such file or folder", str(path))
        if not path.is_dir():
            raise InputError("checkpoint", "is a file, not a Hugging Face checkpoint folder (convert a .gguf "
                             "file with seesaw.runtime.checkpoint.prepare_checkpoint first)", str(path))
        self.folder = path
        self.config, self._files, self._shapes = _scan(path)
        self._handles: dict[Path, Any] = {}

    @property
    def source(self) -> str:
        """The folder as a string (the ``source`` of this checkpoint's errors)."""
        return str(self.folder)

    def names(self) -> set[str]:
        """Names of the tensors stored in the safetensors files (the tied-head alias is not listed)."""
        return set(self._files)

    def __contains__(self, name: object) -> bool:
        """True when :meth:`read` accepts ``name`` (stored, or the tied-head alias)."""
        return isinstance(name, str) and self._resolve(name, strict=False) is not None

    def shape(self, name: str) -> tuple[int, ...]:
        """Full shape (elements per dimension) of tensor ``name``; InputError when it is absent."""
        return self._shapes[self._resolve(name)]

    def read(self, name: str, shard: ShardSlice | tuple[int, int, int] | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Tensor ``name`` (or its slice ``[start, stop)`` along dimension ``dim``) as a contiguous CPU tensor
        of ``dtype``.

        ``shard`` is a plan's ``ShardSlice``, a ``(dim, start, stop)`` triple as returned by
        :func:`seesaw.ir.sharding.shard_range`, or ``None`` for the whole tensor. Only the slice is read
        from disk. Shape: the full shape with dimension ``dim`` replaced by ``stop - start`` (may be 0 for a
        vocab-parallel rank past the vocabulary's end).

        Raises :class:`InputError`: field ``checkpoint`` for an unknown tensor (named, with close matches),
        field ``weight_shards[<name>]`` for a slice outside the tensor.
        """
        real = self._resolve(name)
        handle = self._handle(self._files[real])
        if shard is None:
            tensor = handle.get_tensor(real)
        else:
            dim, start, stop = (shard.dim, shard.start, shard.stop) if isinstance(shard, ShardSlice) else shard
            shape = self._shapes[real]
            if not (0 <= dim < len(shape) and 0 <= start <= stop <= shape[dim]):
                raise InputError(f"weight_shards[{name}]", f"slice dim {dim} [{start}, {stop}) is outside the "
                                 f"tensor's shape {list(shape)}", self.source)
            index = (slice(None),) * dim + (slice(start, stop),)
            tensor = handle.get_slice(real)[index]
        return tensor.to(dtype).contiguous()

    def read_dequantized(self, name: str, shard: ShardSlice | tuple[int, int, int] | None, scale: str,
                         block_size: tuple[int, int] | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """FP8 weight ``name`` (or its slice ``shard``, as :meth:`read`) times its scale tensor ``scale``, in
        ``dtype`` (:func:`seesaw.runtime.quantized.dequantize`; ``block_size``: the checkpoint's scale blocks,
        None for per-tensor or per-channel scales). Only the slice and the scale are read from disk.

        Raises :class:`InputError` as :meth:`read` does, and (field ``checkpoint``) when the scale's shape does
        not fit the weight's.
        """
        weight = self.read(name, shard, dtype=torch.float32)  # every e4m3 value is exact in float32
        full = self.shape(name)
        rows, cols = (0, full[0]), (0, full[1] if len(full) > 1 else 1)
        if shard is not None:
            dim, start, stop = (shard.dim, shard.start, shard.stop) if isinstance(shard, ShardSlice) else shard
            rows, cols = ((start, stop), cols) if dim == 0 else (rows, (start, stop))
        try:
            return dequantize(weight, self.read(scale), block_size, rows, cols, dtype).contiguous()
        except ValueError as err:
            raise InputError("checkpoint", f"{scale}: {err}", self.source) from None

    def close(self) -> None:
        """Drop the open file handles (their memory maps); later reads reopen them."""
        self._handles.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __repr__(self) -> str:
        return f"Checkpoint({self.source!r}, {len(self._files)} tensors)"

    def _handle(self, file: Path):
        handle = self._handles.get(file)
        if handle is None:
            try:
                handle = self._handles[file] = safe_open(str(file), framework="pt")
            except (SafetensorError, OSError) as err:
                raise InputError(file.name, f"unreadable safetensors file: {err}", self.source) from None
        return handle

    def _resolve(self, name: str, strict: bool = True) -> str | None:
        if name in self._files:
            return name
        if name == _TIED_HEAD and self.config.get("tie_word_embeddings") is True and _EMBED in self._files:
            return _EMBED
        if not strict:
            return None
        close = difflib.get_close_matches(name, list(self._files), n=3)
        hint = f" (close matches: {', '.join(close)})" if close else ""
        raise InputError("checkpoint", f"no tensor named '{name}'{hint}", self.source)


# -- checking against a plan -------------------------------------------------------------------------------------
def check_fingerprint(ckpt: Checkpoint, fingerprint: dict[str, Any]) -> None:
    """Refuse ``ckpt`` unless it is the model a plan was made for; reads no weights.

    ``fingerprint`` is the plan's ``model.fingerprint`` (:meth:`ModelConfig.fingerprint`). The checkpoint's
    own fingerprint (from its ``config.json``) must equal it key by key, ignoring ``dtype_bytes`` (the runtime
    computes in its own dtype), ``kv_cache_dtype`` and ``name``. Then every tensor the IR lists
    (``build_graph(cfg).weights()``, an FP8 checkpoint's scales included) must exist with the IR's shape (a
    per-tensor scale may be stored as ``[]`` or ``[1]``). INT4 plans and checkpoints are refused first
    (:func:`seesaw.runtime.quantized.check_runnable`).

    Raises :class:`InputError` (field ``checkpoint``, source = the folder): ``"architecture/shape mismatch
    with the plan: <key>: plan X, checkpoint Y; ..."``, or the first (up to 3) missing or misshapen tensors
    and their count; or the config's own error when ``config.json`` is not a supported model.
    """
    check_runnable(fingerprint)
    cfg = ModelConfig.from_hf_dict(ckpt.config, name=ckpt.folder.name, source=str(ckpt.folder / "config.json"))
    ours = cfg.fingerprint()
    check_runnable(ours, ckpt.source, "checkpoint")
    keys = [k for k in dict.fromkeys([*fingerprint, *ours]) if k not in _IGNORED_FINGERPRINT_KEYS]
    absent = "(absent)"
    diffs = [f"{k}: plan {fingerprint.get(k, absent)}, checkpoint {ours.get(k, absent)}"
             for k in keys if fingerprint.get(k, absent) != ours.get(k, absent)]
    if diffs:
        raise InputError("checkpoint", "architecture/shape mismatch with the plan: " + "; ".join(diffs),
                         ckpt.source)
    problems = []
    for w in build_graph(cfg).weights():
        if w.name not in ckpt:
            problems.append(f"{w.name}: missing")
        elif ckpt.shape(w.name) != tuple(w.shape) and not (w.numel == 1 == math.prod(ckpt.shape(w.name))):
            problems.append(f"{w.name}: shape {list(ckpt.shape(w.name))}, the model needs {list(w.shape)}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError("checkpoint", f"{len(problems)} tensor(s) do not match the model: "
                         + "; ".join(problems[:3]) + more, ckpt.source)

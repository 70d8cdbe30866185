"""Safe storage that knows no model: safetensors tensors + JSON metadata in one file, atomic, verified on read.

File layout: an ordinary ``.safetensors`` file whose header ``__metadata__["prunequant"]`` holds one JSON object::

    {"format_version": 1, "kind": "state" | "model" | ..., "sha256": <digest of the tensors>,
     "versions": {"prunequant": ..., "torch": ..., "safetensors": ...}, "meta": <caller's JSON>}

``sha256`` hashes every tensor's name, dtype, shape and raw bytes in name order, so a flipped byte in the data,
a renamed or reshaped tensor, or a truncated file is caught on load. Writes go to a temporary file in the target
folder, are fsync'ed, then ``os.replace``'d over the target, so a crash never leaves a half-written file behind.
Nothing is pickled; ``torch.load`` is never called.

Used by training checkpoints (:mod:`prunequant.training.checkpoint`), model files (:mod:`prunequant.io`) and the
export artifact (:mod:`prunequant.export.artifact`).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import StorageError

__all__ = [
    "FORMAT_VERSION",
    "atomic_replace",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "load_state",
    "read_metadata",
    "save_state",
    "tensor_digest",
]

FORMAT_VERSION = 1
_META_KEY = "prunequant"


# --------------------------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_replace(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp (and safetensors) create 0600; give the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    path = Path(path)
    atomic_replace(path, lambda tmp: tmp.write_bytes(data))
    return path


def _plain_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors with no two sharing storage (safetensors refuses shared storage)."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise StorageError(f"cannot store {name!r}: expected a Tensor, got {type(t).__name__}")
        t = t.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:
            t = t.clone()
        elif t.numel():
            seen.add(key)
        out[name] = t
    return out


def atomic_save_safetensors(tensors: dict[str, Tensor], path: str | Path,
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file atomically; ``metadata`` is the header's string map."""
    from safetensors.torch import save_file

    path = Path(path)
    plain = _plain_tensors(tensors)
    atomic_replace(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))
    return path


# --------------------------------------------------------------------------------------------- verified state
def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import safetensors

    try:
        ours = version("prunequant")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        ours = "unknown"
    return {"prunequant": ours, "torch": torch.__version__, "safetensors": safetensors.__version__}


def save_state(tensors: dict[str, Tensor], meta: dict[str, Any], path: str | Path, *, kind: str = "state") -> Path:
    """Atomically write ``tensors`` and the JSON-able ``meta`` to one safetensors file with a content digest.

    Args:
        tensors: flat ``{name: Tensor}`` (moved to CPU, made contiguous; shared storage is copied).
        meta: JSON-able metadata stored in the header.
        path: target file; its folder is created. An existing file is replaced atomically.
        kind: a label stored in the header (``"state"``, ``"model"``, ``"artifact"``, ...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile, torch
        >>> p = save_state({"w": torch.ones(2)}, {"step": 3}, tempfile.mkdtemp() + "/s.safetensors")
        >>> load_state(p)[1]
        {'step': 3}
    """
    path = Path(path)
    plain = _plain_tensors(tensors)
    try:
        header = {"format_version": FORMAT_VERSION, "kind": kind, "sha256": tensor_digest(plain),
                  "versions": _versions(), "meta": meta}
        text = json.dumps(header)
    except (TypeError, ValueError) as e:
        raise StorageError(f"{path}: metadata is not JSON-serializable: {e}") from e
    return atomic_save_safetensors(plain, path, metadata={_META_KEY: text})


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header of ``path`` and return the prunequant JSON object (checks the version)."""
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    if not path.is_file():
        raise StorageError(f"{path}: not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StorageError(f"{path}: truncated or not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise StorageError(f"{path}: truncated or corrupt safetensors header (claims {n} bytes, "
                               f"file has {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        text = header["__metadata__"][_META_KEY]
        info = json.loads(text)
    except (ValueError, KeyError, TypeError) as e:
        raise StorageError(f"{path}: not a prunequant file (missing or unreadable metadata: {e})") from e
    if not isinstance(info, dict) or "format_version" not in info:
        raise StorageError(f"{path}: prunequant metadata has no format_version")
    version = info["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StorageError(f"{path}: format version {version!r} is newer than this prunequant supports "
                           f"({FORMAT_VERSION}); upgrade prunequant")
    return info


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The full prunequant header of ``path`` (format version, kind, digest, versions, meta) without the tensors."""
    return _read_header(Path(path))


def load_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_state`; verify its digest. Returns ``(tensors, meta)``.

    Raises :class:`StorageError` naming the file if it is missing, truncated, tampered with, or from a newer format.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    info = _read_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StorageError(f"{path}: corrupt or truncated safetensors data: {e}") from e
    if tensor_digest(tensors) != info.get("sha256"):
        raise StorageError(f"{path}: sha256 mismatch, the file was modified or corrupted after it was written")
    return tensors, info.get("meta", {})

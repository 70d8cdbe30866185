"""The artifact container: one safetensors file (atomic, digest-verified, via :mod:`prunequant.storage`) holding
two ``uint8`` tensors, ``payload`` (every stored stream, concatenated) and ``layout`` (zlib-compressed JSON saying
where each stream lies and how to decode it), plus a readable header with the layout version ``pq``, the model
class/config, a per-layer summary and ``sha`` (sha256 of the canonical header, the layout and the payload, so
editing the readable header is caught too).
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import StorageError

__all__ = ["ARTIFACT_KIND", "DTYPES", "PQ_VERSION", "Payload", "digest", "pack_layout", "payload_item",
           "read_container", "unpack_layout", "write_container"]

PQ_VERSION = 2  # 2: named layout keys, quantizers stored as QuantSpec (1: one-letter keys, class paths)
ARTIFACT_KIND = "pq-artifact"
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool)}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class Payload:
    """Append-only byte buffer; each item is ``[dtype, shape, offset, nbytes]`` in the layout's ``items``."""

    def __init__(self) -> None:
        self.chunks: list[Tensor] = []
        self.items: list[list] = []
        self.size = 0
        self.info_bits = 0.0

    def add(self, t: Tensor, info_bits: float | None = None) -> int:
        """Append ``t``'s bytes; ``info_bits`` is its exact information size (default: its byte size)."""
        t = t.detach().to("cpu").contiguous()
        dt = dtype_name(t.dtype)
        if dt not in DTYPES:
            raise StorageError(f"cannot store a tensor of dtype {t.dtype}")
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)
        self.items.append([dt, list(t.shape), self.size, raw.numel()])
        self.chunks.append(raw)
        self.size += raw.numel()
        self.info_bits += raw.numel() * 8 if info_bits is None else info_bits
        return len(self.items) - 1

    def tensor(self) -> Tensor:
        return torch.cat(self.chunks) if self.chunks else torch.zeros(0, dtype=torch.uint8)


def payload_item(payload: Tensor, items: list, i: int, where: str) -> Tensor:
    """Item ``i`` of the payload as a tensor; :class:`StorageError` naming ``where`` if it is malformed."""
    try:
        dt, shape, off, n = items[int(i)]
        dtype = DTYPES[dt]
        off, n = int(off), int(n)
    except (IndexError, KeyError, TypeError, ValueError) as e:
        raise StorageError(f"{where}: bad payload item {i!r}: {e}") from e
    if off < 0 or off + n > payload.numel():
        raise StorageError(f"{where}: payload item {i} [{off}, {off + n}) lies outside the {payload.numel()}-byte "
                           f"payload (truncated?)")
    raw = payload[off:off + n].clone()
    try:
        return raw.view(dtype).reshape(shape) if n else torch.zeros(shape, dtype=dtype)
    except RuntimeError as e:
        raise StorageError(f"{where}: payload item {i} does not hold a {dt} tensor of shape {shape}") from e


def digest(meta: dict, payload: Tensor, layout: Tensor) -> str:
    body = {k: v for k, v in meta.items() if k != "sha"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for t in (layout, payload):
        h.update(str(t.numel()).encode())
        if t.numel():
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def pack_layout(layout: dict) -> Tensor:
    raw = zlib.compress(json.dumps(layout, separators=(",", ":")).encode(), 9)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def unpack_layout(t: Tensor, path: Path) -> dict:
    try:
        layout = json.loads(zlib.decompress(t.numpy().tobytes()))
        if not isinstance(layout, dict) or not {"items", "entries"} <= set(layout):
            raise ValueError("missing 'items'/'entries'")
        return layout
    except (zlib.error, ValueError) as e:
        raise StorageError(f"{path}: unreadable artifact layout: {e}") from e


def write_container(path: Path, payload: Tensor, layout: dict, header: dict[str, Any]) -> None:
    """Write the container atomically (``header`` gets ``pq`` and ``sha``)."""
    from ...storage import save_state

    packed = pack_layout(layout)
    meta = {"pq": PQ_VERSION, **header}
    meta["sha"] = digest(meta, payload, packed)
    save_state({"payload": payload, "layout": packed}, meta, path, kind=ARTIFACT_KIND)


def read_container(path: Path) -> tuple[Tensor, dict, dict]:
    """``(payload, layout, header)`` of a verified artifact; :class:`StorageError` naming the file for a missing,
    truncated, tampered, foreign, older- or newer-version file."""
    from ...storage import load_state, read_metadata

    header = read_metadata(path)
    if header.get("kind") != ARTIFACT_KIND:
        raise StorageError(f"{path}: not a packed prunequant artifact (kind {header.get('kind')!r}); "
                           f"use prunequant.io.load for model files")
    tensors, meta = load_state(path)
    version = meta.get("pq") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise StorageError(f"{path}: artifact metadata has no layout version")
    if version > PQ_VERSION:
        raise StorageError(f"{path}: artifact layout version {version} is newer than this prunequant supports "
                           f"({PQ_VERSION}); upgrade prunequant")
    if version < PQ_VERSION:
        raise StorageError(f"{path}: artifact layout version {version} predates the named layout ({PQ_VERSION}); "
                           f"export the model again")
    payload, packed = tensors.get("payload"), tensors.get("layout")
    if any(t is None or t.dtype != torch.uint8 for t in (payload, packed)):
        raise StorageError(f"{path}: artifact lacks its uint8 payload/layout tensors")
    if meta.get("sha") != digest(meta, payload, packed):
        raise StorageError(f"{path}: metadata sha256 mismatch, the file was modified after it was written")
    return payload, unpack_layout(packed, path), meta

"""Bit-packing of non-negative integer codes at their real width (1-32 bits per value), vectorized.

Stream layout (the artifact's on-disk format, version 1): value ``i`` occupies bits ``[i*w, (i+1)*w)`` of one
little-endian bit stream, least-significant bit first; stream bit ``k`` is bit ``k % 8`` of byte ``k // 8``.
The last byte is zero-padded. For ``w`` in {1, 2, 4, 8} this is the same as packing ``8 // w`` values per byte
with value ``j`` of a byte in bits ``[j*w, (j+1)*w)``, which is the fast path used here (and the layout the
Triton kernel reads for 4-bit codes: low nibble = even index). Other widths go through ``numpy.packbits`` on
the bit planes. No Python loop over values.

Signed codes are stored with an offset (``value - offset``) chosen by the caller; see :func:`code_offset`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..core.cost import bits_needed  # the one definition, shared with the storage cost model
from ..errors import ConfigError, ShapeError

__all__ = ["MAX_BITS", "bits_needed", "code_offset", "pack_bits", "packed_nbytes", "unpack_bits"]

MAX_BITS = 32
_FAST_WIDTHS = (1, 2, 4, 8)


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= MAX_BITS:
        raise ConfigError(f"bit width must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return int(bits)


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that ``n`` values take at ``bits`` bits each: ``ceil(n * bits / 8)``."""
    return (int(n) * _check_bits(bits) + 7) // 8


def code_offset(bits: int, signed: bool) -> int:
    """Offset that maps ``bits``-bit codes to ``[0, 2**bits)``: ``-2**(bits-1)`` when signed, else 0."""
    bits = _check_bits(bits)
    return -(1 << (bits - 1)) if signed else 0


def _as_numpy_int(values) -> np.ndarray:
    if isinstance(values, Tensor):
        if values.is_floating_point() or values.is_complex():
            raise ShapeError(f"pack_bits expects an integer tensor, got {values.dtype}")
        values = values.detach().to("cpu").reshape(-1).numpy()
    arr = np.asarray(values).reshape(-1)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ShapeError(f"pack_bits expects integers, got dtype {arr.dtype}")
    return arr


def pack_bits(values, bits: int) -> Tensor:
    """Pack non-negative integers ``< 2**bits`` (any shape, flattened) into a ``torch.uint8`` tensor of
    ``packed_nbytes(n, bits)`` bytes. Raises :class:`ConfigError` for a bad width and :class:`ShapeError` for
    values out of ``[0, 2**bits)``."""
    bits = _check_bits(bits)
    arr = _as_numpy_int(values)
    n = arr.size
    if n == 0:
        return torch.zeros(0, dtype=torch.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= (1 << bits):
        raise ShapeError(f"pack_bits: values span [{lo}, {hi}], outside [0, {(1 << bits) - 1}] for {bits} bits")
    if bits in _FAST_WIDTHS:
        per = 8 // bits
        v = arr.astype(np.uint8)
        pad = (-n) % per
        if pad:
            v = np.concatenate([v, np.zeros(pad, np.uint8)])
        shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
        out = np.bitwise_or.reduce(v.reshape(-1, per) << shifts, axis=1).astype(np.uint8)
    else:
        v = arr.astype(np.uint64)
        planes = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
        out = np.packbits(planes.reshape(-1), bitorder="little")
    return torch.from_numpy(np.ascontiguousarray(out))


def unpack_bits(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` values of width ``bits`` as a 1-D ``torch.int64`` tensor.

    Raises :class:`ShapeError` if ``packed`` is too short for ``n`` values (e.g. a truncated file)."""
    bits = _check_bits(bits)
    n = int(n)
    if n < 0:
        raise ShapeError(f"unpack_bits: n must be >= 0, got {n}")
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8:
        raise ShapeError(f"unpack_bits expects a torch.uint8 tensor, got "
                         f"{getattr(packed, 'dtype', type(packed).__name__)}")
    need = packed_nbytes(n, bits)
    if packed.numel() < need:
        raise ShapeError(f"unpack_bits: {packed.numel()} bytes hold fewer than {n} values of {bits} bits "
                         f"(need {need})")
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    raw = packed.detach().to("cpu").reshape(-1)[:need].numpy()
    if bits in _FAST_WIDTHS:
        per = 8 // bits
        shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
        mask = np.uint8((1 << bits) - 1)
        vals = ((raw[:, None] >> shifts) & mask).reshape(-1)[:n].astype(np.int64)
    else:
        planes = np.unpackbits(raw, count=n * bits, bitorder="little").reshape(n, bits).astype(np.int64)
        vals = planes @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(vals))



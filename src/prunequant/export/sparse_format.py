"""Storage of a tensor's non-zero pattern: none (dense), a bitmap, or CSR with bit-packed indices.

The kept values are always stored in row-major (flattened) order, so the value stream does not depend on the
index format. For CSR the tensor is viewed as ``(shape[0], numel // shape[0])`` (a 1-D tensor as one row);
row pointers are packed at ``bits_needed(nnz)`` bits and column indices at ``bits_needed(cols - 1)`` bits.

:func:`choose_format` picks, per tensor, the format with the fewest total bytes (index + values) given the
bits per stored value; ties go to the simpler format (dense < bitmap < csr). The layouts and their index widths
are those of the one storage cost model, :mod:`prunequant.core.cost`; here each stream is rounded up to whole
bytes as it is written.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.cost import FORMATS, csr_view_shape
from ..errors import ConfigError, ShapeError
from .bitpack import bits_needed, pack_bits, packed_nbytes, unpack_bits

__all__ = [
    "FORMATS",
    "SparseIndex",
    "choose_format",
    "csr_view_shape",
    "decode_mask",
    "encode_mask",
    "format_nbytes",
]


def _csr_widths(shape: tuple[int, ...], nnz: int) -> tuple[int, int]:
    _, cols = csr_view_shape(shape)
    return bits_needed(nnz), bits_needed(max(cols - 1, 0))


def format_nbytes(fmt: str, shape: tuple[int, ...], nnz: int, value_bits: int) -> int:
    """Exact bytes of index + values for ``fmt`` (values packed at ``value_bits`` bits each)."""
    numel = 1
    for d in shape:
        numel *= int(d)
    if fmt == "dense":
        return packed_nbytes(numel, value_bits)
    values = packed_nbytes(nnz, value_bits)
    if fmt == "bitmap":
        return packed_nbytes(numel, 1) + values
    if fmt == "csr":
        rows, _ = csr_view_shape(shape)
        wr, wc = _csr_widths(shape, nnz)
        return packed_nbytes(rows + 1, wr) + packed_nbytes(nnz, wc) + values
    raise ConfigError(f"unknown sparse format {fmt!r}; expected one of {FORMATS}")


def choose_format(shape: tuple[int, ...], nnz: int, value_bits: int) -> str:
    """The format in :data:`FORMATS` with the fewest bytes for ``nnz`` kept values of ``value_bits`` bits."""
    sizes = [format_nbytes(f, shape, nnz, value_bits) for f in FORMATS]
    return FORMATS[sizes.index(min(sizes))]


@dataclass
class SparseIndex:
    """An encoded non-zero pattern: ``format``, the packed ``tensors`` and the JSON-able ``meta``."""

    format: str
    tensors: dict[str, Tensor]
    meta: dict


def encode_mask(mask: Tensor, fmt: str) -> SparseIndex:
    """Encode the boolean keep-``mask`` in format ``fmt`` (``"dense"`` stores nothing)."""
    if mask.dtype != torch.bool:
        raise ShapeError(f"encode_mask expects a bool tensor, got {mask.dtype}")
    shape = tuple(mask.shape)
    nnz = int(mask.sum())
    if fmt == "dense":
        return SparseIndex("dense", {}, {"nnz": mask.numel()})
    if fmt == "bitmap":
        return SparseIndex("bitmap", {"bitmap": pack_bits(mask.reshape(-1).to(torch.uint8), 1)}, {"nnz": nnz})
    if fmt == "csr":
        rows, cols = csr_view_shape(shape)
        m2 = mask.reshape(rows, cols)
        row_ptr = torch.zeros(rows + 1, dtype=torch.int64)
        row_ptr[1:] = m2.sum(dim=1).cumsum(0)
        col = m2.nonzero()[:, 1]
        wr, wc = _csr_widths(shape, nnz)
        return SparseIndex("csr", {"row_ptr": pack_bits(row_ptr, wr), "col": pack_bits(col, wc)},
                           {"nnz": nnz, "row_bits": wr, "col_bits": wc})
    raise ConfigError(f"unknown sparse format {fmt!r}; expected one of {FORMATS}")


def decode_mask(index: SparseIndex, shape: tuple[int, ...]) -> Tensor:
    """Rebuild the boolean mask of ``shape``; raises :class:`ShapeError` on inconsistent (corrupt) indices."""
    shape = tuple(int(d) for d in shape)
    numel = 1
    for d in shape:
        numel *= d
    nnz = int(index.meta.get("nnz", -1))
    if index.format == "dense":
        return torch.ones(shape, dtype=torch.bool)
    if index.format == "bitmap":
        bits = unpack_bits(index.tensors["bitmap"], 1, numel)
        mask = bits.to(torch.bool).reshape(shape)
        if int(mask.sum()) != nnz:
            raise ShapeError(f"bitmap holds {int(mask.sum())} kept entries, metadata says {nnz}")
        return mask
    if index.format == "csr":
        rows, cols = csr_view_shape(shape)
        wr, wc = int(index.meta["row_bits"]), int(index.meta["col_bits"])
        row_ptr = unpack_bits(index.tensors["row_ptr"], wr, rows + 1)
        col = unpack_bits(index.tensors["col"], wc, nnz)
        counts = row_ptr.diff()
        if int(row_ptr[0]) != 0 or int(row_ptr[-1]) != nnz or bool((counts < 0).any()):
            raise ShapeError(f"CSR row pointers are inconsistent (start {int(row_ptr[0])}, end {int(row_ptr[-1])}, "
                             f"nnz {nnz})")
        if nnz and int(col.max()) >= cols:
            raise ShapeError(f"CSR column index {int(col.max())} out of range for {cols} columns")
        row = torch.repeat_interleave(torch.arange(rows), counts)
        flat = torch.zeros(numel, dtype=torch.bool)
        flat[row * cols + col] = True
        if int(flat.sum()) != nnz:
            raise ShapeError("CSR indices repeat a position")
        return flat.reshape(shape)
    raise ShapeError(f"unknown sparse format {index.format!r}; expected one of {FORMATS}")

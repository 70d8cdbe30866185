"""The one storage cost model: how many bits a (pruned, quantized) tensor takes in the compressed file.

The report (:func:`prunequant.analysis.report`), the joint optimiser (:mod:`prunequant.joint.costs`) and the
artifact writer (:mod:`prunequant.export.artifact`, through :mod:`prunequant.export.sparse_format`) all count with
these functions, so the size the tool prints is the size it writes.

A tensor with ``n`` elements, ``k`` non-zeros, values of ``v`` bits each (the sum of a quantizer's code streams,
:meth:`~prunequant.core.quantizer.WeightFakeQuant.code_bits`: PWLQ's region id included; a float tensor's dtype
width otherwise) is stored in the cheapest of three layouts:

* ``dense``: ``n * v`` (every value, zeros included);
* ``bitmap``: ``n`` pattern bits + ``k * v``;
* ``csr`` over the ``(rows, n / rows)`` view: ``(rows + 1) * bits_needed(k)`` row pointers +
  ``k * bits_needed(cols - 1)`` column indices + ``k * v``;

plus the quantizer's state: every tensor of its :meth:`~prunequant.core.quantizer.WeightFakeQuant.spec`
(scales, zero points, breakpoints, bias-correction terms) at its dtype width. A quantized weight without a
quantizer object (only a ``bits`` number) is charged one fp32 scale per output channel. An activation quantizer
at a layer input costs its scale(s) and zero point (:func:`act_quantizer_state_bits`).
"""
from __future__ import annotations

from torch import Tensor

from ..errors import ConfigError
from .quantizer import ActFakeQuant

__all__ = [
    "FORMATS",
    "act_quantizer_state_bits",
    "bits_needed",
    "cheapest_format",
    "csr_view_shape",
    "format_bits",
    "index_bits",
    "quantizer_state_bits",
    "quantizer_value_bits",
    "tensor_storage_bits",
    "weight_storage_bits",
]

FORMATS = ("dense", "bitmap", "csr")


def bits_needed(max_value: int) -> int:
    """Bits to store unsigned integers 0..``max_value`` (at least 1)."""
    if max_value < 0:
        raise ConfigError(f"bits_needed: max_value must be >= 0, got {max_value}")
    return max(1, int(max_value).bit_length())


def csr_view_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view ``(rows, cols)`` that CSR indexes: ``(shape[0], rest)``; 0-D/1-D tensors are one row."""
    numel = 1
    for d in shape:
        numel *= int(d)
    if len(shape) <= 1:
        return 1, numel
    rows = int(shape[0])
    return rows, (numel // rows if rows else 0)


def index_bits(fmt: str, shape: tuple[int, ...], nnz: int) -> int:
    """Bits of the non-zero pattern in layout ``fmt`` (0 for dense)."""
    numel = 1
    for d in shape:
        numel *= int(d)
    if fmt == "dense":
        return 0
    if fmt == "bitmap":
        return numel
    if fmt == "csr":
        rows, cols = csr_view_shape(shape)
        return (rows + 1) * bits_needed(nnz) + nnz * bits_needed(max(cols - 1, 0))
    raise ConfigError(f"unknown sparse format {fmt!r}; expected one of {FORMATS}")


def format_bits(fmt: str, shape: tuple[int, ...], nnz: int, value_bits: int) -> int:
    """Bits of pattern + values for layout ``fmt`` (values at ``value_bits`` each)."""
    numel = 1
    for d in shape:
        numel *= int(d)
    stored = numel if fmt == "dense" else nnz
    return index_bits(fmt, shape, nnz) + stored * int(value_bits)


def cheapest_format(shape: tuple[int, ...], nnz: int, value_bits: int, *, dense_ok: bool = True) -> tuple[str, int]:
    """``(format, bits)`` of the cheapest layout (ties go to the simpler one: dense < bitmap < csr);
    ``dense_ok=False`` when the zeros do not decode to zero without a pattern (pruned after quantizing)."""
    best = None
    for f in FORMATS:
        if f == "dense" and not dense_ok:
            continue
        b = format_bits(f, shape, nnz, value_bits)
        if best is None or b < best[1]:
            best = (f, b)
    return best


def quantizer_state_bits(quant) -> int:
    """Bits of every tensor in the quantizer's spec (scales, zero points, breakpoints, bias correction)."""
    return sum(t.numel() * t.element_size() * 8 for t in quant.spec().tensors.values())


def act_quantizer_state_bits(quant) -> int:
    """Bits an activation quantizer stores: every tensor of its spec (one scale per tensor, one per channel for
    per-channel scales, none for dynamic per-token scales) plus its int32 zero point."""
    if not isinstance(quant, ActFakeQuant):  # none, or a training-time (soft) activation quantizer
        return 0
    return quantizer_state_bits(quant) + quant.zero_point.numel() * 32


def quantizer_value_bits(quant) -> int:
    """Bits per stored element: the sum over the quantizer's code streams (PWLQ: code + region id)."""
    return int(sum(quant.code_bits().values()))


def tensor_storage_bits(t: Tensor, value_bits: int, state_bits: int = 0, *, dense_ok: bool = True) -> int:
    """Bits to store ``t`` (its non-zero pattern read from the values) at ``value_bits`` per value in the cheapest
    layout, plus ``state_bits``."""
    n = t.numel()
    if n == 0:
        return int(state_bits)
    k = int(t.count_nonzero())
    return cheapest_format(tuple(t.shape), k, value_bits, dense_ok=dense_ok)[1] + int(state_bits)


def weight_storage_bits(w: Tensor, quant=None, bits: int | None = None) -> int:
    """Bits of an effective weight ``w``: with a weight quantizer, its code streams and spec state; with only a
    bit width ``bits`` < the dtype width, ``bits`` per value plus one fp32 scale per output channel; else the
    dtype width per value (fp32 32, fp16/bf16 16)."""
    if quant is not None:
        form = quant.storage_form(w)  # the raw tensor is not needed for the sizes below
        if form is not None:
            return tensor_storage_bits(w, quantizer_value_bits(form), quantizer_state_bits(form))
    width = w.element_size() * 8
    if bits is not None and bits < width:
        rows = csr_view_shape(tuple(w.shape))[0]
        return tensor_storage_bits(w, bits, rows * 32)
    return tensor_storage_bits(w, width)

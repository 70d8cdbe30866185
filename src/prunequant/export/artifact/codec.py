"""Encoding of each state tensor into payload streams, and back.

A layout entry per tensor of the plain state dict, with named keys:

* ``kind: "quantized"`` (a weight quantizer on it): the integer ``streams`` of
  :meth:`~prunequant.core.quantizer.WeightFakeQuant.codes` (codes and, for PWLQ, region ids), each bit-packed at
  the width its range needs (``max - min`` of the stored codes, stored as ``width`` + ``offset``; rows of
  different widths, e.g. per-channel bit widths, as ``groups`` with a ``row_group`` map), and the ``quantizer``
  as its :class:`~prunequant.core.quantizer.QuantSpec` (scheme, JSON attrs, named tensors), rebuilt with
  :func:`~prunequant.core.quantizer.quantizer_from_spec`, whose ``decode`` gives back the float weights.
* ``kind: "sparse"`` (pruned, not quantized): the kept float ``values``.
* ``kind: "raw"`` (biases, BN statistics, activation scales ...): the tensor as is;
* ``kind: "constant"``: a tensor holding one repeated value (e.g. a BatchNorm folded to identity): the value
  and the shape only.

For quantized and sparse entries the non-zero pattern is stored as nothing (dense), a bitmap or CSR, whichever
makes the tensor smallest (:func:`~prunequant.export.sparse_format.choose_format`); only kept codes/values are
stored.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...core.chain import weight_chains
from ...core.quantizer import QuantSpec, check_weight, quantizer_from_spec
from ...errors import LayerError, ShapeError, StorageError, UnsupportedModuleError
from ..bitpack import bits_needed, pack_bits, unpack_bits
from ..sparse_format import SparseIndex, choose_format, csr_view_shape, decode_mask, encode_mask, format_nbytes
from .container import DTYPES, Payload, dtype_name, payload_item

__all__ = ["EntryReport", "decode_all", "decode_entry", "effective_tensors", "encode_float", "encode_quantized"]


@dataclass
class EntryReport:
    """How one state tensor was stored."""

    name: str
    kind: str             # "quantized" | "sparse" | "raw"
    format: str           # "dense" | "bitmap" | "csr"
    numel: int
    nnz: int
    bits: float           # bits per stored code/value (sum over code streams; mean over rows if mixed)
    nbytes: int           # payload bytes of this entry
    fp32_nbytes: int      # 4 * numel


@torch.no_grad()
def effective_tensors(model: nn.Module) -> dict[str, tuple[Tensor, Any, Tensor | None]]:
    """Every tensor of the plain (de-parametrized) state dict: ``{key: (value, quantizer, quantizer_input)}``.

    Parametrized tensors give their effective value (what forward uses); the rest come from ``state_dict``."""
    out: dict[str, tuple[Tensor, Any, Tensor | None]] = {}
    for key, t in model.state_dict().items():
        if ".parametrizations." in f".{key}":
            continue
        out[key] = (t, None, None)
    for chain in weight_chains(model):  # raises naming the layer if a tensor carries two quantizers
        quant = chain.quantizer
        qin = None if quant is None else chain.quant_input()
        if quant is not None:
            quant = quant.storage_form(qin)
        out[chain.key] = (chain.effective(), quant, None if quant is None else qin)
    return out


# --------------------------------------------------------------------------------------------- encoding
def _pack_stream(payload: Payload, values: Tensor) -> tuple[dict, int]:
    """Bit-pack 1-D integer ``values`` at the width their range needs: ``({"item", "width", "offset"}, width)``."""
    v = values.reshape(-1).to(torch.int64)
    lo = int(v.min()) if v.numel() else 0
    width = bits_needed(int(v.max()) - lo) if v.numel() else 1
    item = payload.add(pack_bits(v - lo, width), v.numel() * width)
    return {"item": item, "width": width, "offset": lo}, width


def _unpack_stream(payload: Tensor, items: list, s: dict, n: int, where: str) -> Tensor:
    return unpack_bits(payload_item(payload, items, s["item"], where), int(s["width"]), n) + int(s["offset"])


def _row_widths(c2d: Tensor, sel2d: Tensor) -> Tensor:
    """Bits each row's selected codes need (``bits_needed(max - min)``; 1 for an empty row)."""
    big = torch.iinfo(torch.int64).max
    lo = torch.where(sel2d, c2d, big).amin(1)
    hi = torch.where(sel2d, c2d, -big).amax(1)
    span = torch.where(sel2d.any(1), hi - lo, torch.zeros_like(lo))
    bits = torch.zeros_like(span)
    rest = span.clone()
    for _ in range(64):  # bit_length, vectorized over rows
        nz = rest > 0
        if not bool(nz.any()):
            break
        bits += nz.long()
        rest = rest >> 1
    return bits.clamp(min=1)


def _index_bits(index: SparseIndex, name: str, shape: tuple) -> float:
    numel = 1
    for d in shape:
        numel *= int(d)
    if name == "bitmap":
        return float(numel)
    if name == "row_ptr":
        return float((csr_view_shape(shape)[0] + 1) * index.meta["row_bits"])
    return float(index.meta["nnz"] * index.meta["col_bits"])


def encode_quantized(key: str, w_eff: Tensor, quant, qin: Tensor, payload: Payload) -> tuple[dict, EntryReport]:
    """Layout entry of a quantized tensor (codes at their real width, pattern, quantizer spec)."""
    check_weight(qin, f"layer '{key}'")
    codes = quant.codes(qin)
    decoded = quant.decode(codes).to(w_eff.dtype)
    keep = w_eff != 0
    nnz = int(keep.sum())
    shape = tuple(w_eff.shape)
    full = {n: c for n, c in codes.items() if tuple(c.shape) == shape}
    other = {n: c for n, c in codes.items() if tuple(c.shape) != shape}
    if not full:
        raise UnsupportedModuleError(f"layer '{key}': {type(quant).__name__}.codes() returned no tensor shaped like "
                                     f"the weight {shape}")
    rows, cols = csr_view_shape(shape)
    keep2d = keep.reshape(rows, cols)
    # widths over the codes that will be stored (kept positions); dense storage needs zeros to decode to zero
    dense_ok = bool((decoded[~keep] == 0).all())
    value_bits = sum(int(_row_widths(c.reshape(rows, cols).long(), keep2d).float().mean().ceil()) if nnz else 1
                     for c in full.values())
    fmt = choose_format(shape, nnz, value_bits)
    if fmt == "dense" and not dense_ok:  # pruned after quantizing: the pattern must be stored
        fmt = min(("bitmap", "csr"), key=lambda f: format_nbytes(f, shape, nnz, value_bits))
    sel2d = torch.ones(rows, cols, dtype=torch.bool) if fmt == "dense" else keep2d
    n_sel = int(sel2d.sum())
    index = encode_mask(keep, fmt)
    entry: dict[str, Any] = {"kind": "quantized", "dtype": dtype_name(w_eff.dtype), "shape": list(shape),
                             "format": fmt, "streams": {},
                             "index": {n: payload.add(t, _index_bits(index, n, shape))
                                       for n, t in index.tensors.items()},
                             "index_meta": index.meta}
    stored_bits = 0
    for name, c in full.items():
        c2d = c.reshape(rows, cols).to(torch.int64)
        row_w = _row_widths(c2d, sel2d)
        widths = torch.unique(row_w)
        if widths.numel() <= 1:  # one width for the whole tensor: a single stream
            stream, width = _pack_stream(payload, c2d[sel2d])
            stored_bits += width * n_sel
            entry["streams"][name] = {**stream, "dtype": dtype_name(c.dtype)}
            continue
        # mixed precision (e.g. per-channel bit widths): one stream per group of rows sharing a width
        group = torch.searchsorted(widths, row_w)
        groups = []
        for g in range(widths.numel()):  # <= 16 distinct widths: a loop over groups, not channels
            in_g = group == g
            stream, width = _pack_stream(payload, c2d[in_g][sel2d[in_g]])
            stored_bits += width * int(sel2d[in_g].sum())
            groups.append(stream)
        entry["streams"][name] = {"groups": groups, "dtype": dtype_name(c.dtype),
                                  "row_group": payload.add(group.to(torch.uint8), rows * bits_needed(len(groups) - 1))}
    for name, c in other.items():
        stream, _ = _pack_stream(payload, c)
        entry["streams"][name] = {**stream, "dtype": dtype_name(c.dtype), "shape": list(c.shape)}
    spec = quant.spec()
    entry["quantizer"] = {"scheme": spec.scheme, "attrs": spec.attrs,
                          "tensors": {k: payload.add(v.detach().to("cpu")) for k, v in spec.tensors.items()}}
    report = EntryReport(key, "quantized", fmt, w_eff.numel(), nnz, round(stored_bits / max(n_sel, 1), 3), 0,
                         4 * w_eff.numel())
    return entry, report


def encode_float(key: str, t: Tensor, payload: Payload) -> tuple[dict, EntryReport]:
    """Layout entry of a float (or integer) tensor: raw, or its kept values with a bitmap/CSR pattern."""
    shape = tuple(t.shape)
    if t.numel() > 1 and t.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                     torch.int32) and bool((t == t.reshape(-1)[0]).all()):
        # one value repeated (e.g. a BatchNorm folded to identity): stored as that value and the shape
        v = t.reshape(-1)[0].item()
        # the JSON number must give the same tensor back
        if math.isfinite(v) and torch.full((), v, dtype=t.dtype).item() == v:
            return ({"kind": "constant", "dtype": dtype_name(t.dtype), "shape": list(shape), "value": v},
                    EntryReport(key, "constant", "dense", t.numel(), t.numel() if v else 0, 0, 0, 4 * t.numel()))
    if not t.is_floating_point() or t.numel() == 0:
        i = payload.add(t)
        return {"kind": "raw", "tensor": i}, EntryReport(key, "raw", "dense", t.numel(), t.numel(),
                                                         t.element_size() * 8, 0, 4 * t.numel())
    if not bool(torch.isfinite(t).all()):
        raise LayerError(f"layer '{key}': {int((~torch.isfinite(t)).sum())} NaN/Inf value(s); cannot export")
    keep = t != 0
    nnz = int(keep.sum())
    bits = t.element_size() * 8
    fmt = choose_format(shape, nnz, bits) if t.dim() >= 1 else "dense"
    if fmt == "dense":
        i = payload.add(t)
        return {"kind": "raw", "tensor": i}, EntryReport(key, "raw", "dense", t.numel(), nnz, bits, 0, 4 * t.numel())
    index = encode_mask(keep, fmt)
    entry = {"kind": "sparse", "dtype": dtype_name(t.dtype), "shape": list(shape), "format": fmt,
             "index": {n: payload.add(x, _index_bits(index, n, shape)) for n, x in index.tensors.items()},
             "index_meta": index.meta, "values": payload.add(t[keep])}
    return entry, EntryReport(key, "sparse", fmt, t.numel(), nnz, bits, 0, 4 * t.numel())


# --------------------------------------------------------------------------------------------- decoding
def _ensure_quantizers_registered() -> None:
    """Import the packages that register the built-in quantizers (a reader may not have imported them)."""
    for mod in ("prunequant.quantization", "prunequant.joint"):
        importlib.import_module(mod)


def _rebuild_quantizer(spec: dict, state: dict[str, Tensor], where: str):
    try:
        qspec = QuantSpec(str(spec["scheme"]), dict(spec.get("attrs", {})), state)
    except (KeyError, TypeError, ValueError) as e:
        raise StorageError(f"{where}: malformed quantizer spec ({e})") from e
    try:
        return quantizer_from_spec(qspec)
    except StorageError:
        _ensure_quantizers_registered()
        try:
            return quantizer_from_spec(qspec)
        except StorageError as e:
            raise StorageError(f"{where}: {e}") from e


def _decode_codes(name: str, c: dict, shape: tuple, sel: Tensor, payload: Tensor, items: list,
                  where: str) -> Tensor:
    cdt = DTYPES[c["dtype"]]
    if "shape" in c:
        sh = tuple(int(d) for d in c["shape"])
        n = 1
        for d in sh:
            n *= d
        return _unpack_stream(payload, items, c, n, where).reshape(sh).to(cdt)
    rows, cols = csr_view_shape(shape)
    sel2d = sel.reshape(rows, cols)
    if "groups" in c:
        group = payload_item(payload, items, c["row_group"], where).long()
        if group.numel() != rows or (rows and int(group.max()) >= len(c["groups"])):
            raise ShapeError(f"row-group map of {group.numel()} rows does not fit {rows} rows")
        full2d = torch.zeros(rows, cols, dtype=torch.int64)
        for g, s in enumerate(c["groups"]):
            in_g = group == g
            block_sel = sel2d[in_g]
            block = full2d[in_g]
            block[block_sel] = _unpack_stream(payload, items, s, int(block_sel.sum()), where)
            full2d[in_g] = block
        return full2d.reshape(shape).to(cdt)
    v = _unpack_stream(payload, items, c, int(sel2d.sum()), where)
    full = torch.full(shape, int(c["offset"]), dtype=torch.int64)
    full[sel] = v
    return full.to(cdt)


def decode_entry(key: str, e: dict, payload: Tensor, items: list) -> Tensor:
    """The tensor a layout entry stores (decoded float weights for a quantized entry)."""
    where = f"tensor '{key}'"
    kind = e.get("kind")
    if kind == "raw":
        return payload_item(payload, items, e["tensor"], where)
    if kind == "constant":
        try:
            return torch.full(tuple(int(d) for d in e["shape"]), e["value"], dtype=DTYPES[e["dtype"]])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise StorageError(f"{where}: malformed constant entry ({err})") from err
    try:
        dtype = DTYPES[e["dtype"]]
        shape = tuple(int(d) for d in e["shape"])
        index = SparseIndex(e["format"], {n: payload_item(payload, items, i, where) for n, i in e["index"].items()},
                            e["index_meta"])
        mask = decode_mask(index, shape)
    except (KeyError, TypeError, ValueError) as err:
        raise StorageError(f"{where}: malformed entry ({err})") from err
    if kind == "sparse":
        values = payload_item(payload, items, e["values"], where).to(dtype)
        if values.numel() != int(mask.sum()):
            raise ShapeError(f"{values.numel()} stored values for {int(mask.sum())} kept positions")
        out = torch.zeros(shape, dtype=dtype)
        out[mask] = values
        return out
    if kind != "quantized":
        raise StorageError(f"{where}: unknown entry kind {kind!r}")
    sel = mask if e["format"] != "dense" else torch.ones(shape, dtype=torch.bool)
    try:
        codes = {name: _decode_codes(name, c, shape, sel, payload, items, where) for name, c in e["streams"].items()}
        spec = e["quantizer"]
        state = {k: payload_item(payload, items, i, where) for k, i in spec["tensors"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise StorageError(f"{where}: malformed entry ({err})") from err
    quant = _rebuild_quantizer(spec, state, where)
    try:
        dec = quant.decode(codes).to(dtype)
    except (AttributeError, KeyError, RuntimeError, ValueError) as err:
        raise StorageError(f"{where}: the {spec['scheme']} quantizer could not decode the stored codes: {err}") from err
    if tuple(dec.shape) != shape:
        raise StorageError(f"{where}: decoded shape {tuple(dec.shape)} != stored shape {shape}")
    return dec if e["format"] == "dense" else torch.where(mask, dec, torch.zeros((), dtype=dtype))


def decode_all(layout: dict, payload: Tensor, source: str) -> dict[str, Tensor]:
    """Every tensor of a layout; :class:`StorageError` naming ``source`` and the tensor on any corruption."""
    items = layout["items"]
    out = {}
    for key, e in layout["entries"].items():
        try:
            out[key] = decode_entry(key, e, payload, items)
        except ShapeError as err:
            raise StorageError(f"{source}: tensor '{key}' is corrupt: {err}") from err
        except StorageError as err:
            raise StorageError(f"{source}: {err}") from err
    return out

"""Packed compressed artifact: ``export(model, path)`` / ``load_compressed(path)``.

One safetensors file written through :func:`prunequant.io.save_state` (atomic write, sha256 over the tensor
bytes, container version check). It holds two ``uint8`` tensors: ``payload``, the concatenation of every stored
stream, and ``layout``, zlib-compressed JSON that says where each stream lies and how to decode it (compressed
because on small models plain JSON would be a third of the file). The readable safetensors header keeps the
layout version ``pq``, the model class/config, a per-layer summary and ``sha``. A layer's weight is stored as:

* ``q`` (quantized: a :class:`~prunequant.quantization.base.WeightFakeQuant` parametrization on it): the exact
  integer codes of :meth:`WeightFakeQuant.codes` (codes and, for PWLQ, region ids) bit-packed at the width their
  range needs (``max - min`` of the stored codes, offset by ``min``), the quantizer's state (scales, zero points,
  breakpoints, bias correction) as float tensors, and the class + plain attributes needed to rebuild the
  quantizer, whose own :meth:`~WeightFakeQuant.decode` gives back the float weights.
* ``s`` (pruned, not quantized): the kept float values.
* ``r`` (anything else: biases, BN statistics, activation scales): the raw tensor.

For ``q`` and ``s`` the non-zero pattern is stored as nothing (dense), a bitmap or CSR, whichever makes the layer
smallest (:func:`~prunequant.export.sparse_format.choose_format`); only kept codes/values are stored.

Exactness: :func:`export` decodes every layer through the same code path :func:`load_compressed` uses and refuses
(``LayerError``) to write a layer whose rebuilt weight is not bit-identical to the model's effective weight, so a
loaded artifact's forward equals the in-memory fake-quant model's forward exactly.

Integrity: besides the container digest over the tensors, the header carries ``sha`` = sha256 of the canonical
header JSON, the layout and the payload, so editing the readable header is caught too. ``pq`` is the artifact layout version; a
newer one is refused with :class:`~prunequant.errors.StorageError`.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import LayerError, ShapeError, StorageError, UnsupportedModuleError
from .bitpack import bits_needed, pack_bits, unpack_bits
from .sparse_format import SparseIndex, choose_format, csr_view_shape, decode_mask, encode_mask, format_nbytes

__all__ = [
    "ARTIFACT_KIND",
    "PQ_VERSION",
    "EntryReport",
    "ExportResult",
    "effective_tensors",
    "export",
    "load_compressed",
    "read_artifact",
]

PQ_VERSION = 1
ARTIFACT_KIND = "pq-artifact"
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool)}


# --------------------------------------------------------------------------------------------- reports
@dataclass
class EntryReport:
    """How one state tensor was stored."""

    name: str
    kind: str             # "q" quantized codes, "s" sparse float, "r" raw
    format: str           # "dense" | "bitmap" | "csr"
    numel: int
    nnz: int
    bits: float           # bits per stored code/value (sum over code streams; mean over rows if mixed)
    nbytes: int           # payload bytes of this entry
    fp32_nbytes: int      # 4 * numel


@dataclass
class ExportResult:
    """Summary of an :func:`export`: file size, payload size, the exact-bit lower bound and per-entry rows."""

    path: str
    file_bytes: int
    payload_bytes: int
    theoretical_bytes: float
    fp32_bytes: int
    entries: list[EntryReport] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        """File bytes over the fp32 bytes of the same tensors (dense, 4 bytes each)."""
        return self.file_bytes / self.fp32_bytes if self.fp32_bytes else float("nan")

    @property
    def overhead(self) -> float:
        """File bytes over the exact-bit size of the stored streams, minus one (header + byte padding)."""
        return self.file_bytes / self.theoretical_bytes - 1 if self.theoretical_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(size_ratio=self.size_ratio, overhead=self.overhead)
        return d


# --------------------------------------------------------------------------------------------- payload
class _Payload:
    """Append-only byte buffer; items are ``[dtype, shape, offset, nbytes]`` rows in the metadata."""

    def __init__(self) -> None:
        self.chunks: list[Tensor] = []
        self.items: list[list] = []
        self.size = 0
        self.info_bits = 0.0

    def add(self, t: Tensor, info_bits: float | None = None) -> int:
        t = t.detach().to("cpu").contiguous()
        dt = str(t.dtype).removeprefix("torch.")
        if dt not in _DTYPES:
            raise StorageError(f"cannot store a tensor of dtype {t.dtype}")
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)
        self.items.append([dt, list(t.shape), self.size, raw.numel()])
        self.chunks.append(raw)
        self.size += raw.numel()
        self.info_bits += raw.numel() * 8 if info_bits is None else info_bits
        return len(self.items) - 1

    def tensor(self) -> Tensor:
        return torch.cat(self.chunks) if self.chunks else torch.zeros(0, dtype=torch.uint8)


def _item(payload: Tensor, items: list, i: int, where: str) -> Tensor:
    try:
        dt, shape, off, n = items[int(i)]
        dtype = _DTYPES[dt]
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


# --------------------------------------------------------------------------------------------- model walk
def _weight_quantizer_chain(module: nn.Module, tname: str):
    """``(effective, quantizer, quantizer_input)`` for a parametrized tensor (quantizer None if none)."""
    from ..quantization.base import WeightFakeQuant

    plist = module.parametrizations[tname]
    x = plist.original
    quant, qin = None, None
    for p in plist:
        if isinstance(p, WeightFakeQuant):
            if quant is not None:
                raise UnsupportedModuleError(f"two weight quantizers on one tensor ({type(quant).__name__}, "
                                             f"{type(p).__name__})")
            quant, qin = p, x
        x = p(x)
    return x, quant, qin


@torch.no_grad()
def effective_tensors(model: nn.Module) -> dict[str, tuple[Tensor, Any, Tensor | None]]:
    """Every tensor of the plain (de-parametrized) state dict: ``{key: (value, quantizer, quantizer_input)}``.

    Parametrized tensors give their effective value (what forward uses); the rest come from ``state_dict``."""
    out: dict[str, tuple[Tensor, Any, Tensor | None]] = {}
    for key, t in model.state_dict().items():
        if ".parametrizations." in f".{key}":
            continue
        out[key] = (t, None, None)
    for mname, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tname in module.parametrizations:
            key = f"{mname}.{tname}" if mname else tname
            try:
                out[key] = _weight_quantizer_chain(module, tname)
            except UnsupportedModuleError as e:
                raise UnsupportedModuleError(f"layer '{key}': {e}") from e
    return out


# --------------------------------------------------------------------------------------------- quantizer (de)serialization
def _plain_attrs(q: nn.Module) -> dict[str, Any]:
    out = {}
    for k, v in vars(q).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
    return out


def _rebuild_quantizer(spec: dict, state: dict[str, Tensor], where: str):
    from ..quantization.base import WeightFakeQuant

    path = spec.get("cls", "")
    mod_name, _, cls_name = path.rpartition(".")
    if not mod_name.startswith("prunequant."):
        raise StorageError(f"{where}: refusing to import quantizer class {path!r} (not a prunequant class)")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise StorageError(f"{where}: quantizer class {path!r} is not available in this prunequant: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, WeightFakeQuant)):
        raise StorageError(f"{where}: {path!r} is not a WeightFakeQuant subclass")
    q = cls.__new__(cls)
    nn.Module.__init__(q)
    for k, v in spec.get("a", {}).items():
        setattr(q, k, v)
    for k in spec.get("buffers", []):
        q.register_buffer(k, state.get(k))
    for k, v in state.items():
        if k not in q._buffers:
            setattr(q, k, v)
    return q


# --------------------------------------------------------------------------------------------- encoding
def _encode_quant(key: str, w_eff: Tensor, quant, qin: Tensor, payload: _Payload) -> tuple[dict, EntryReport]:
    from ..quantization.base import check_weight

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
    # widths over the codes that will be stored (kept positions); dense storage needs zeros to decode to zero
    dense_ok = bool((decoded[~keep] == 0).all())
    value_bits = sum(int(_row_widths(c.reshape(csr_view_shape(shape)).long(), keep.reshape(csr_view_shape(shape)))
                         .float().mean().ceil()) if nnz else 1 for c in full.values())
    fmt = choose_format(shape, nnz, value_bits)
    if fmt == "dense" and not dense_ok:  # pruned after quantizing: the pattern must be stored
        fmt = min(("bitmap", "csr"), key=lambda f: format_nbytes(f, shape, nnz, value_bits))
    sel = torch.ones(shape, dtype=torch.bool) if fmt == "dense" else keep
    n_sel = int(sel.sum())
    entry: dict[str, Any] = {"k": "q", "dt": str(w_eff.dtype).removeprefix("torch."), "sh": list(shape), "f": fmt,
                             "c": {}}
    index = encode_mask(keep, fmt)
    entry["i"] = {n: payload.add(t, _index_bits(index, n, shape)) for n, t in index.tensors.items()}
    entry["im"] = index.meta
    stored_bits = 0
    rows, cols = csr_view_shape(shape)
    sel2d = sel.reshape(rows, cols)
    for name, c in full.items():
        dt = str(c.dtype).removeprefix("torch.")
        c2d = c.reshape(rows, cols).to(torch.int64)
        row_w = _row_widths(c2d, sel2d)
        widths = torch.unique(row_w)
        if widths.numel() <= 1:  # one width for the whole tensor: a single stream
            v = c2d[sel2d]
            lo = int(v.min()) if v.numel() else 0
            width = bits_needed(int(v.max()) - lo) if v.numel() else 1
            stored_bits += width * n_sel
            t = payload.add(pack_bits(v - lo, width), n_sel * width)
            entry["c"][name] = {"t": t, "w": width, "o": lo, "dt": dt}
            continue
        # mixed precision (e.g. per-channel bit widths): one stream per group of rows sharing a width
        group = torch.searchsorted(widths, row_w)
        groups = []
        for g in range(widths.numel()):  # <= 16 distinct widths: a loop over groups, not channels
            in_g = group == g
            v = c2d[in_g][sel2d[in_g]]
            lo = int(v.min()) if v.numel() else 0
            width = bits_needed(int(v.max()) - lo) if v.numel() else 1
            stored_bits += width * v.numel()
            groups.append([payload.add(pack_bits(v - lo, width), v.numel() * width), width, lo])
        entry["c"][name] = {"g": groups, "map": payload.add(group.to(torch.uint8), rows * bits_needed(len(groups) - 1)),
                            "dt": dt}
    stored_bits = stored_bits / max(n_sel, 1)
    for name, c in other.items():
        v = c.reshape(-1).to(torch.int64)
        lo = int(v.min()) if v.numel() else 0
        width = bits_needed(int(v.max()) - lo) if v.numel() else 1
        t = payload.add(pack_bits(v - lo, width), v.numel() * width)
        entry["c"][name] = {"t": t, "w": width, "o": lo, "dt": str(c.dtype).removeprefix("torch."),
                            "sh": list(c.shape)}
    state = {k: v for k, v in quant.state_dict().items() if v is not None}
    state.update({k: v for k, v in quant.export_state().items() if v is not None})
    entry["q"] = {"cls": f"{type(quant).__module__}.{type(quant).__qualname__}", "a": _plain_attrs(quant),
                  "buffers": list(quant._buffers.keys()),
                  "s": {k: payload.add(v.detach().to("cpu")) for k, v in state.items()}}
    report = EntryReport(key, "q", fmt, w_eff.numel(), nnz, round(stored_bits, 3), 0, 4 * w_eff.numel())
    return entry, report


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


def _encode_float(key: str, t: Tensor, payload: _Payload) -> tuple[dict, EntryReport]:
    shape = tuple(t.shape)
    if not t.is_floating_point() or t.numel() == 0:
        i = payload.add(t)
        return {"k": "r", "t": i}, EntryReport(key, "r", "dense", t.numel(), t.numel(), t.element_size() * 8, 0,
                                               4 * t.numel())
    if not bool(torch.isfinite(t).all()):
        raise LayerError(f"layer '{key}': {int((~torch.isfinite(t)).sum())} NaN/Inf value(s); cannot export")
    keep = t != 0
    nnz = int(keep.sum())
    bits = t.element_size() * 8
    fmt = choose_format(shape, nnz, bits) if t.dim() >= 1 else "dense"
    if fmt == "dense":
        i = payload.add(t)
        return {"k": "r", "t": i}, EntryReport(key, "r", "dense", t.numel(), nnz, bits, 0, 4 * t.numel())
    index = encode_mask(keep, fmt)
    entry = {"k": "s", "dt": str(t.dtype).removeprefix("torch."), "sh": list(shape), "f": fmt,
             "i": {n: payload.add(x, _index_bits(index, n, shape)) for n, x in index.tensors.items()},
             "im": index.meta, "v": payload.add(t[keep])}
    return entry, EntryReport(key, "s", fmt, t.numel(), nnz, bits, 0, 4 * t.numel())


# --------------------------------------------------------------------------------------------- decoding
def _decode_entry(key: str, e: dict, payload: Tensor, items: list) -> Tensor:
    where = f"tensor '{key}'"
    kind = e.get("k")
    if kind == "r":
        return _item(payload, items, e["t"], where)
    try:
        dtype = _DTYPES[e["dt"]]
        shape = tuple(int(d) for d in e["sh"])
        index = SparseIndex(e["f"], {n: _item(payload, items, i, where) for n, i in e["i"].items()}, e["im"])
        mask = decode_mask(index, shape)
    except (KeyError, TypeError, ValueError) as err:
        raise StorageError(f"{where}: malformed entry ({err})") from err
    if kind == "s":
        values = _item(payload, items, e["v"], where).to(dtype)
        if values.numel() != int(mask.sum()):
            raise ShapeError(f"{values.numel()} stored values for {int(mask.sum())} kept positions")
        out = torch.zeros(shape, dtype=dtype)
        out[mask] = values
        return out
    if kind != "q":
        raise StorageError(f"{where}: unknown entry kind {kind!r}")
    sel = mask if e["f"] != "dense" else torch.ones(shape, dtype=torch.bool)
    n_sel = int(sel.sum())
    codes: dict[str, Tensor] = {}
    for name, c in e["c"].items():
        cdt = _DTYPES[c["dt"]]
        if "sh" in c:
            sh = tuple(int(d) for d in c["sh"])
            n = 1
            for d in sh:
                n *= d
            codes[name] = (unpack_bits(_item(payload, items, c["t"], where), int(c["w"]), n) + int(c["o"])) \
                .reshape(sh).to(cdt)
        elif "g" in c:
            rows, cols = csr_view_shape(shape)
            sel2d = sel.reshape(rows, cols)
            group = _item(payload, items, c["map"], where).long()
            if group.numel() != rows or (rows and int(group.max()) >= len(c["g"])):
                raise ShapeError(f"row-group map of {group.numel()} rows does not fit {rows} rows")
            full2d = torch.zeros(rows, cols, dtype=torch.int64)
            for g, (t, w, lo) in enumerate(c["g"]):
                in_g = group == g
                block_sel = sel2d[in_g]
                block = full2d[in_g]
                block[block_sel] = unpack_bits(_item(payload, items, t, where), int(w), int(block_sel.sum())) \
                    + int(lo)
                full2d[in_g] = block
            codes[name] = full2d.reshape(shape).to(cdt)
        else:
            v = unpack_bits(_item(payload, items, c["t"], where), int(c["w"]), n_sel) + int(c["o"])
            full = torch.full(shape, int(c["o"]), dtype=torch.int64)
            full[sel] = v
            codes[name] = full.to(cdt)
    spec = e["q"]
    state = {k: _item(payload, items, i, where) for k, i in spec["s"].items()}
    quant = _rebuild_quantizer(spec, state, where)
    try:
        dec = quant.decode(codes).to(dtype)
    except (AttributeError, KeyError, RuntimeError, ValueError) as err:
        raise StorageError(f"{where}: {spec['cls']} could not decode the stored codes: {err}") from err
    if tuple(dec.shape) != shape:
        raise StorageError(f"{where}: decoded shape {tuple(dec.shape)} != stored shape {shape}")
    return dec if e["f"] == "dense" else torch.where(mask, dec, torch.zeros((), dtype=dtype))


def _decode_all(meta: dict, payload: Tensor, path: Path) -> dict[str, Tensor]:
    items = meta["t"]
    out = {}
    for key, e in meta["e"].items():
        try:
            out[key] = _decode_entry(key, e, payload, items)
        except ShapeError as err:
            raise StorageError(f"{path}: tensor '{key}' is corrupt: {err}") from err
        except StorageError as err:
            raise StorageError(f"{path}: {err}") from err
    return out


def _digest(meta: dict, payload: Tensor, layout: Tensor) -> str:
    body = {k: v for k, v in meta.items() if k != "sha"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for t in (layout, payload):
        h.update(str(t.numel()).encode())
        if t.numel():
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def _pack_layout(layout: dict) -> Tensor:
    raw = zlib.compress(json.dumps(layout, separators=(",", ":")).encode(), 9)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def _unpack_layout(t: Tensor, path: Path) -> dict:
    try:
        layout = json.loads(zlib.decompress(t.numpy().tobytes()))
        if not isinstance(layout, dict) or not {"t", "e"} <= set(layout):
            raise ValueError("missing 't'/'e'")
        return layout
    except (zlib.error, ValueError) as e:
        raise StorageError(f"{path}: unreadable artifact layout: {e}") from e


# --------------------------------------------------------------------------------------------- public API
@torch.no_grad()
def export(model: nn.Module, path: str | Path, *, check: bool = True) -> ExportResult:
    """Write ``model``'s compressed form to ``path`` (see module docstring) and return its size summary.

    Quantized weights must still carry their ``WeightFakeQuant`` parametrization (export before finalizing the
    quantizer, or the weights are stored as floats). ``check`` (default on) decodes every tensor again and raises
    :class:`LayerError` if any differs from the model's effective tensor.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"export expects an nn.Module, got {type(model).__name__}")
    from ..io import _layer_bits, act_quant_specs, save_state

    path = Path(path)
    payload = _Payload()
    entries: dict[str, dict] = {}
    reports: list[EntryReport] = []
    tensors = effective_tensors(model)
    for key, (t, quant, qin) in tensors.items():
        before = payload.size
        if quant is not None:
            e, r = _encode_quant(key, t, quant, qin, payload)
        else:
            e, r = _encode_float(key, t, payload)
        r.nbytes = payload.size - before
        entries[key] = e
        reports.append(r)
    config = getattr(model, "config", None)
    try:
        json.dumps(config)
    except (TypeError, ValueError):
        config = None
    layout = {"t": payload.items, "e": entries, "act": act_quant_specs(model), "bits": _layer_bits(model)}
    blob = payload.tensor()
    if check:
        decoded = _decode_all(layout, blob, path)
        for key, (t, _, _) in tensors.items():
            if not torch.equal(decoded[key].to(t.dtype), t.detach().cpu()):
                diff = (decoded[key].double() - t.detach().cpu().double()).abs().max()
                raise LayerError(f"layer '{key}': the stored form does not rebuild the effective tensor exactly "
                                 f"(max abs diff {float(diff):.3g}); refusing to write {path}")
    packed_layout = _pack_layout(layout)
    meta: dict[str, Any] = {
        "pq": PQ_VERSION,
        "model": {"class": f"{type(model).__module__}.{type(model).__qualname__}", "config": config},
        "layers": {r.name: [r.kind, r.format, r.bits, r.nnz, r.numel] for r in reports if r.kind != "r"}}
    meta["sha"] = _digest(meta, blob, packed_layout)
    save_state({"payload": blob, "layout": packed_layout}, meta, path, kind=ARTIFACT_KIND)
    fp32 = sum(r.fp32_nbytes for r in reports)
    return ExportResult(str(path), path.stat().st_size, payload.size, payload.info_bits / 8, fp32, reports)


def read_artifact(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Verify and decode an artifact: ``(plain state dict, metadata)``. Raises :class:`StorageError` naming the
    file for a missing, truncated, tampered, foreign or newer-version file."""
    from ..io import load_state, read_metadata

    path = Path(path)
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
    payload, packed_layout = tensors.get("payload"), tensors.get("layout")
    if any(t is None or t.dtype != torch.uint8 for t in (payload, packed_layout)):
        raise StorageError(f"{path}: artifact lacks its uint8 payload/layout tensors")
    if meta.get("sha") != _digest(meta, payload, packed_layout):
        raise StorageError(f"{path}: metadata sha256 mismatch, the file was modified after it was written")
    layout = _unpack_layout(packed_layout, path)
    meta = {**meta, **layout}
    return _decode_all(layout, payload, path), meta


def load_compressed(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a runnable model from an artifact written by :func:`export`.

    The architecture comes from the stored ``model.config`` (via :func:`prunequant.models.build_model`) unless a
    plain ``model`` of the same architecture is given. Weights are the decoded floats (exactly the exported
    model's effective weights); activation quantizers are re-attached; bit widths are set as
    ``prunequant_wbits``/``prunequant_abits``. The model is returned in eval mode.
    """
    from ..io import apply_layer_bits_, restore_act_quants_

    path = Path(path)
    state, meta = read_artifact(path)
    if model is None:
        from ..models import build_from_config

        model = build_from_config((meta.get("model") or {}).get("config"), str(path))
    elif not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"load_compressed: model must be an nn.Module, got {type(model).__name__}")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise StorageError(f"{path}: load_compressed needs a plain model (no parametrizations)")
    restore_act_quants_(model, meta.get("act", {}), str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise StorageError(f"{path}: stored tensors do not fit {type(model).__name__}: {e}") from e
    apply_layer_bits_(model, meta.get("bits", {}))
    model.prunequant_artifact = {"path": str(path), "version": meta["pq"]}
    return model.eval()

"""One compressed model file (``.pq``): ``prunequant.save(model, path)`` / ``prunequant.load(path)``.

The file is the artifact container (:mod:`prunequant.export.artifact.container`: safetensors + JSON, atomic,
digest-verified) of kind ``"pq-model"``. Unlike :func:`~prunequant.export.export` (which stores effective
weights for deployment), it stores what is needed to rebuild the *quantized* model:

* every compressed weight as its quantizer's integer code streams at their real width (bit-packed, only the
  non-zero positions when a bitmap/CSR pattern is cheaper), and the quantizer's :class:`QuantSpec`; on load the
  raw parameter becomes the dequantized value before bias correction and the quantizer is attached again, so the
  forward is bit-identical, training can continue (straight-through) and the model can be saved again;
* fixed pruning masks (:class:`~prunequant.core.masks.FixedMask`), as their own pattern only where it differs from
  the stored non-zero pattern;
* activation quantizers (their spec, re-attached), every other tensor (biases, norms, buffers; zeros as a
  pattern when that is smaller), per-layer bit widths;
* the construction recipe: the model class and its JSON ``config`` (rebuilt with
  :func:`prunequant.models.build_from_config`); a model without one is loaded into a model you pass.

Soft states (an analytic threshold's learned mask, a joint soft mixture) are training state: finalize them or use
a training checkpoint (:mod:`prunequant.training.checkpoint`). Before writing, :func:`save` rebuilds every chain
from what it stores and refuses (:class:`~prunequant.errors.LayerError`) a tensor whose forward would not be
bit-identical.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core.chain import weight_chains
from ..core.masks import FixedMask
from ..core.quantizer import QuantSpec, check_weight
from ..errors import LayerError, StorageError, UnsupportedModuleError
from .artifact.codec import _rebuild_quantizer, decode_entry, encode_float, encode_quantized
from .artifact.container import Payload, digest, pack_layout, payload_item, unpack_layout
from .sparse_format import SparseIndex, choose_format, decode_mask, encode_mask

__all__ = ["MODEL_KIND", "MODEL_VERSION", "SaveResult", "file_bytes", "load", "save"]

MODEL_KIND = "pq-model"
MODEL_VERSION = 1


@dataclass
class SaveResult:
    """What :func:`save` wrote: the path, file bytes and payload bytes (the bit-packed streams)."""

    path: str
    file_bytes: int
    payload_bytes: int


# --------------------------------------------------------------------------------------------- encoding
def _mask_keep(chain) -> Tensor | None:
    keep = None
    for m in chain.masks:
        if not isinstance(m, FixedMask):
            raise StorageError(f"layer '{chain.key}': {type(m).__name__} is a soft (training) mask; finalize_ the "
                               "model first, or save a training checkpoint")
        k = m.mask.to(torch.bool)
        keep = k if keep is None else keep & k
    return keep


def _check_chain(chain) -> None:
    for p in chain.parametrizations:
        if p is chain.quantizer or p in chain.masks:
            continue
        raise UnsupportedModuleError(f"layer '{chain.key}': parametrization {type(p).__name__} is neither a mask nor "
                                     "a weight quantizer; it cannot be stored in a .pq file")


@torch.no_grad()
def _encode_chain(chain, payload: Payload) -> dict[str, Any]:
    """Layout entry of one parametrized tensor: raw parameter values (codes or floats), masks, quantizer spec."""
    _check_chain(chain)
    keep = _mask_keep(chain)
    q = chain.quantizer
    effective = chain.effective().detach()
    entry: dict[str, Any] = {}
    if q is not None:
        qin = chain.quant_input()
        form = q.storage_form(qin)
        if form is None:
            raise StorageError(f"layer '{chain.key}': a soft quantizer ({q.scheme}) is training state; finalize_ "
                               "the model first, or save a training checkpoint")
        check_weight(qin, f"layer '{chain.key}'")
        raw_q = form.without_bias_correction() if form.bc_shift is not None else form
        raw = raw_q.decode(form.codes(qin)).to(effective.dtype)  # the parameter value to restore
        e, _ = encode_quantized(chain.key, raw, raw_q, qin, payload)
        spec = form.spec()  # the raw quantizer's tensors are in the entry already; add the bias-correction terms
        stored_tensors = e["quantizer"]["tensors"]
        for k, v in spec.tensors.items():
            if k not in stored_tensors:
                stored_tensors[k] = payload.add(v.detach().cpu())
        e["quantizer"] = {"scheme": spec.scheme, "attrs": spec.attrs, "tensors": stored_tensors}
        entry["value"] = e
        stored = raw
    else:
        e, _ = encode_float(chain.key, effective, payload)
        entry["value"] = e
        stored = effective
    if keep is not None:
        keep = keep.expand_as(stored).cpu()
        if torch.equal(keep, stored.cpu() != 0):
            entry["mask"] = "values"  # the mask is the stored non-zero pattern: nothing more to store
        else:
            fmt = choose_format(tuple(keep.shape), int(keep.sum()), 0)
            fmt = "bitmap" if fmt == "dense" else fmt
            index = encode_mask(keep, fmt)
            entry["mask"] = {"format": fmt, "index": {n: payload.add(t) for n, t in index.tensors.items()},
                             "index_meta": index.meta}
    return entry


def _build_layout(model: nn.Module) -> tuple[Payload, dict, dict[str, Tensor]]:
    """Everything :func:`save` writes, in memory: payload, layout and the effective tensors it must rebuild."""
    from ..io import act_quant_specs, layer_bits

    payload = Payload()
    entries: dict[str, dict] = {}
    chains: dict[str, dict] = {}
    for key, t in model.state_dict().items():
        if ".parametrizations." in f".{key}" or key.startswith("parametrizations."):
            continue
        entries[key], _ = encode_float(key, t, payload)
    effective: dict[str, Tensor] = {}
    for chain in weight_chains(model):
        chains[chain.key] = _encode_chain(chain, payload)
        effective[chain.key] = chain.effective().detach().cpu()
    layout = {"items": payload.items, "entries": entries, "chains": chains, "act": act_quant_specs(model),
              "bits": layer_bits(model)}
    return payload, layout, effective


def _recipe(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    try:
        json.dumps(config)
    except (TypeError, ValueError):
        config = None
    dtypes = {str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()}
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "config": config,
            "dtype": dtypes.pop() if len(dtypes) == 1 else None}


# --------------------------------------------------------------------------------------------- decoding
def _decode_chain(key: str, c: dict, payload: Tensor, items: list, source: str):
    """``(raw parameter value, mask or None, quantizer or None)`` of a stored chain."""
    where = f"{source}: tensor '{key}'"
    try:
        e = c["value"]
        quant = None
        if e.get("kind") == "quantized":
            spec = e["quantizer"]
            state = {k: payload_item(payload, items, i, where) for k, i in spec["tensors"].items()}
            quant = _rebuild_quantizer(spec, state, where)
            raw_entry = dict(e)
            raw_spec = QuantSpec(spec["scheme"], spec["attrs"],
                                 {k: v for k, v in state.items() if k not in ("bc_shift", "bc_gain")})
            raw_entry["quantizer"] = {"scheme": raw_spec.scheme, "attrs": raw_spec.attrs,
                                      "tensors": {k: spec["tensors"][k] for k in raw_spec.tensors}}
            value = decode_entry(key, raw_entry, payload, items)
        else:
            value = decode_entry(key, e, payload, items)
        mask = None
        if "mask" in c:
            if c["mask"] == "values":
                mask = value != 0
            else:
                m = c["mask"]
                index = SparseIndex(m["format"], {n: payload_item(payload, items, i, where)
                                                  for n, i in m["index"].items()}, m["index_meta"])
                mask = decode_mask(index, tuple(value.shape))
    except (KeyError, TypeError, ValueError) as err:
        raise StorageError(f"{where}: malformed entry ({err})") from err
    return value, mask, quant


def _get(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    mname, _, tname = dotted.rpartition(".")
    return (model.get_submodule(mname) if mname else model), tname


def _assemble(model: nn.Module, layout: dict, payload: Tensor, source: str) -> nn.Module:
    """Load the stored tensors into a plain ``model`` and attach masks, quantizers and activation quantizers."""
    from ..io import apply_layer_bits_, restore_act_quants_

    items = layout["items"]
    state: dict[str, Tensor] = {}
    for key, e in layout["entries"].items():
        try:
            state[key] = decode_entry(key, e, payload, items)
        except StorageError as err:
            raise StorageError(f"{source}: {err}") from err
    chains = {key: _decode_chain(key, c, payload, items, source) for key, c in layout["chains"].items()}
    for key, (value, _, _) in chains.items():
        state[key] = value
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise StorageError(f"{source}: load needs a plain model (no parametrizations) to load into")
    from ..core.resize import resize_to_state_dict_

    resize_to_state_dict_(model, state)  # a channel-pruned model is smaller than its constructor's
    restore_act_quants_(model, layout.get("act", {}), source)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise StorageError(f"{source}: stored tensors do not fit {type(model).__name__}: {e}") from e
    for key, (value, mask, quant) in chains.items():
        module, tname = _get(model, key)
        if mask is not None:
            parametrize.register_parametrization(module, tname, FixedMask(mask.to(value.device)))
        if quant is not None:
            parametrize.register_parametrization(module, tname, quant.to(value.device))
    apply_layer_bits_(model, layout.get("bits", {}))
    return model


# --------------------------------------------------------------------------------------------- public API
def file_bytes(model: nn.Module) -> int:
    """The size :func:`save` writes for ``model``, measured by writing it to a temporary file (the same code)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return save(model, Path(d) / "model.pq").file_bytes


@torch.no_grad()
def save(model: nn.Module, path: str | Path) -> SaveResult:
    """Write ``model`` as one compressed ``.pq`` file (see the module docstring).

    Args:
        model: a pruned and/or quantized model (quantizers attached; masks finalized or fixed).
        path: the file to write (atomically; its folder is created).

    Returns:
        A :class:`SaveResult` with the file and payload bytes.

    Raises:
        StorageError: soft training state (analytic mask, joint soft mixture) still attached.
        LayerError: a tensor the stored form would not rebuild bit for bit.

    Example:
        >>> import torch, tempfile, os
        >>> from torch import nn
        >>> import prunequant
        >>> from prunequant.quantization import PWLQConfig
        >>> model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        >>> _ = prunequant.quantize_(model, PWLQConfig(wbits=4, abits=None))
        >>> p = os.path.join(tempfile.mkdtemp(), "m.pq")
        >>> _ = prunequant.save(model, p)
        >>> m2 = prunequant.load(p, model=nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)))
        >>> x = torch.randn(2, 16)
        >>> torch.equal(m2(x), model(x))
        True
    """
    from ..storage import save_state

    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"save expects an nn.Module, got {type(model).__name__}")
    path = Path(path)
    payload, layout, effective = _build_layout(model)
    blob = payload.tensor()
    # rebuild every chain from what is stored and compare with the model's effective tensors
    for key, c in layout["chains"].items():
        value, mask, quant = _decode_chain(key, c, blob, layout["items"], str(path))
        x = value if mask is None else value * mask.to(value.dtype)
        y = x if quant is None else quant.to(x.device)(x.to(effective[key].dtype))
        if not torch.equal(y.to(effective[key].dtype), effective[key]):
            diff = float((y.double() - effective[key].double()).abs().max())
            raise LayerError(f"layer '{key}': the stored form does not rebuild the effective tensor exactly (max abs "
                             f"diff {diff:.3g}); refusing to write {path}")
    packed = pack_layout(layout)
    meta = {"pq_model": MODEL_VERSION, "model": _recipe(model)}
    meta["sha"] = digest(meta, blob, packed)
    save_state({"payload": blob, "layout": packed}, meta, path, kind=MODEL_KIND)
    return SaveResult(str(path), path.stat().st_size, payload.size)


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Read a ``.pq`` file written by :func:`save`: the *quantized* model (quantizers and masks attached).

    Args:
        path: the file (its digest is verified).
        model: a plain model of the same architecture to load into; by default it is rebuilt from the stored
            construction recipe (:func:`prunequant.models.build_from_config`).

    Returns:
        The model in eval mode; its outputs equal the saved model's bit for bit. Bake the quantizers with
        ``prunequant.finalize_(model, bake_quantization=True)``; export it to ONNX with Q/DQ as it is.

    Raises:
        StorageError: missing, truncated, tampered, foreign or newer-version file; a model that does not fit.
    """
    from ..storage import load_state, read_metadata

    path = Path(path)
    header = read_metadata(path)
    if header.get("kind") != MODEL_KIND:
        raise StorageError(f"{path}: not a compressed prunequant model (kind {header.get('kind')!r})")
    tensors, meta = load_state(path)
    version = meta.get("pq_model") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise StorageError(f"{path}: model file metadata has no format version")
    if version > MODEL_VERSION:
        raise StorageError(f"{path}: .pq model version {version} is newer than this prunequant supports "
                           f"({MODEL_VERSION}); upgrade prunequant")
    blob, packed = tensors.get("payload"), tensors.get("layout")
    if any(t is None or t.dtype != torch.uint8 for t in (blob, packed)):
        raise StorageError(f"{path}: the file lacks its uint8 payload/layout tensors")
    if meta.get("sha") != digest(meta, blob, packed):
        raise StorageError(f"{path}: metadata sha256 mismatch, the file was modified after it was written")
    layout = unpack_layout(packed, path)
    if "chains" not in layout:
        raise StorageError(f"{path}: malformed .pq model layout (no 'chains')")
    if model is None:
        from ..models import build_from_config

        recipe = meta.get("model") or {}
        model = build_from_config(recipe.get("config"), str(path),
                                  module=str(recipe.get("class", "")).rpartition(".")[0] or None)
        dtype = getattr(torch, str(recipe.get("dtype")), None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            model = model.to(dtype)  # an fp16 / bf16 model comes back in its own precision
    elif not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"load: model must be an nn.Module, got {type(model).__name__}")
    model = _assemble(model, layout, blob, str(path))
    model.prunequant_file = {"path": str(path), "version": version}
    return model.eval()


"""Model files: save and load a whole (pruned, quantized) model through :mod:`prunequant.storage`.

A model file is a :mod:`prunequant.storage` file of kind ``"model"`` (atomic, sha256-verified safetensors + JSON)
holding the model's raw ``state_dict`` (including parametrization originals and buffers such as pruning masks),
the effective value of every parametrized tensor, the model config (so :func:`load` can rebuild it through the
model registry), the parametrizations per tensor, the input activation quantizers and the per-layer bit widths.

The storage functions (:func:`save_state`, :func:`load_state`, :func:`read_metadata`, ...) are re-exported here
for convenience; code that needs storage only imports :mod:`prunequant.storage`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .core.chain import weight_chains
from .core.masks import FixedMask
from .core.quantizer import ActFakeQuant, attach_input_quant
from .errors import StorageError, UnsupportedModuleError
from .storage import (
    FORMAT_VERSION,
    atomic_save_safetensors,
    atomic_write_bytes,
    load_state,
    read_metadata,
    save_state,
    tensor_digest,
)

__all__ = [
    "FORMAT_VERSION",
    "act_quant_specs",
    "apply_layer_bits_",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "layer_bits",
    "load",
    "load_state",
    "read_metadata",
    "restore_act_quants_",
    "save",
    "save_state",
    "tensor_digest",
]

_EFFECTIVE = "effective/"
_STATE = "state/"
_BIT_ATTRS = ("prunequant_wbits", "prunequant_abits")
# FixedMask lived in prunequant.pruning.base before the core layer; files written then name it so.
_FIXED_MASK_NAMES = {f"{FixedMask.__module__}.{FixedMask.__qualname__}", "prunequant.pruning.base.FixedMask"}


# --------------------------------------------------------------------------------------------- models
def _parametrized(model: nn.Module) -> dict[str, list[str]]:
    """``{"module.tensor": [qualified class name of each parametrization]}`` for every parametrized tensor."""
    return {c.key: [f"{type(p).__module__}.{type(p).__qualname__}" for p in c.parametrizations]
            for c in weight_chains(model)}


def layer_bits(model: nn.Module) -> dict[str, dict[str, int]]:
    """Bit widths per module: ``prunequant_wbits``/``prunequant_abits`` attributes, or a quantizer's ``bits``.

    Returns:
        ``{module name: {"prunequant_wbits": b, "prunequant_abits": a}}`` for every module that has either.
    """
    out: dict[str, dict[str, int]] = {}
    for mname, module in model.named_modules():
        entry = {a: int(getattr(module, a)) for a in _BIT_ATTRS if getattr(module, a, None) is not None}
        if "prunequant_wbits" not in entry and parametrize.is_parametrized(module, "weight"):
            bits = [int(p.bits) for p in module.parametrizations["weight"] if getattr(p, "bits", None) is not None]
            if bits:
                entry["prunequant_wbits"] = min(bits)
        if entry:
            out[mname] = entry
    return out


def act_quant_specs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {bits, signed[, granularity, channel_dim, ratio, channels]}}`` for every input activation
    quantizer (``attach_input_quant``; :meth:`ActFakeQuant.layout`)."""
    return {mname: m.input_quant.layout()
            for mname, m in model.named_modules() if isinstance(getattr(m, "input_quant", None), ActFakeQuant)}


def restore_act_quants_(model: nn.Module, spec: dict[str, dict[str, Any]], source: str) -> None:
    """Re-attach input activation quantizers from :func:`act_quant_specs` output (their scale/zero-point buffers
    are loaded with the state afterwards); ``source`` names the file in errors."""
    for mname, q in spec.items():
        try:
            module = model.get_submodule(mname) if mname else model
            current = getattr(module, "input_quant", None)
            if not isinstance(current, ActFakeQuant) or current.layout() != ActFakeQuant.from_layout(q).layout():
                attach_input_quant(module, ActFakeQuant.from_layout(q))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise StorageError(f"{source}: stored activation quantizer for layer '{mname}' does not fit "
                               f"{type(model).__name__}: {e}") from e


def apply_layer_bits_(model: nn.Module, bits: dict[str, dict[str, int]]) -> None:
    """Set ``prunequant_wbits``/``prunequant_abits`` from :func:`layer_bits` output (missing layers skipped)."""
    for mname, entry in bits.items():
        try:
            module = model.get_submodule(mname) if mname else model
        except AttributeError:
            continue
        for attr, value in entry.items():
            if attr in _BIT_ATTRS:
                setattr(module, attr, int(value))


def _get(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    mname, _, tname = dotted.rpartition(".")
    return (model.get_submodule(mname) if mname else model), tname


def save(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (config, raw state incl. parametrizations, effective tensors, bit widths) to ``path``.

    Written atomically and digest-protected (:func:`prunequant.storage.save_state`); nothing is pickled.

    Args:
        model: any ``nn.Module``; with a JSON-able ``model.config`` (``{"name": registry name, **kwargs}``, as the
            bundled models have) :func:`load` can rebuild it without being given a model.
        path: target ``.safetensors`` file (its folder is created).
        metadata: JSON-able compression state stored with it, e.g. the method config and its results.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UnsupportedModuleError: ``model`` is not a Module. StorageError: ``config`` or ``metadata`` not JSON-able.

    Example:
        >>> import tempfile, torch
        >>> from prunequant.models import DigitsCNN
        >>> from prunequant.io import save, load
        >>> m = DigitsCNN().eval()
        >>> p = save(m, tempfile.mkdtemp() + "/cnn.safetensors", metadata={"note": "fp32"})
        >>> m2 = load(p)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> bool(torch.equal(m(x), m2.eval()(x))), m2.prunequant_metadata
        (True, {'note': 'fp32'})
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"io.save expects an nn.Module, got {type(model).__name__}")
    path = Path(path)
    tensors: dict[str, Tensor] = {_STATE + k: v for k, v in model.state_dict().items()}
    params = _parametrized(model)
    with torch.no_grad():
        for key in params:
            module, tname = _get(model, key)
            tensors[_EFFECTIVE + key] = getattr(module, tname)
    config = getattr(model, "config", None)
    if config is not None:
        try:
            json.dumps(config)
        except (TypeError, ValueError) as e:
            raise StorageError(f"{path}: model.config of {type(model).__name__} is not JSON-able: {e}") from e
    meta = {"model_class": f"{type(model).__module__}.{type(model).__qualname__}", "model_config": config,
            "parametrizations": params, "layer_bits": layer_bits(model), "act_quant": act_quant_specs(model),
            "compression": metadata or {}}
    return save_state(tensors, meta, path, kind="model")


def _restore_masks(model: nn.Module, raw: dict[str, Tensor], params: dict[str, list[str]]) -> None:
    """Re-attach :class:`~prunequant.core.masks.FixedMask` where it was the only parametrization of a tensor."""
    for key, classes in params.items():
        if len(classes) != 1 or classes[0] not in _FIXED_MASK_NAMES:
            continue
        mname, _, tname = key.rpartition(".")
        prefix = f"{mname}.parametrizations.{tname}" if mname else f"parametrizations.{tname}"
        mask, original = raw.get(f"{prefix}.0.mask"), raw.get(f"{prefix}.original")
        if mask is None or original is None:
            continue
        module, _ = _get(model, key)
        parametrize.register_parametrization(module, tname, FixedMask(mask))
        with torch.no_grad():  # keep the pruned values too, so a mask can be revised later
            module.parametrizations[tname].original.copy_(original)


def load(path: str | Path, model: nn.Module | None = None, *, restore_masks: bool = True) -> nn.Module:
    """Load a model written by :func:`save`.

    Args:
        path: a file written by :func:`save` (its digest is verified).
        model: the model to load into; ``None`` rebuilds it from the stored config through the model registry
            (an application model's module, e.g. ``prunequant.apps.glucose``, is imported on demand).
        restore_masks: re-attach fixed pruning masks (see below).

    Returns:
        The loaded model, with ``model.prunequant_metadata`` holding the stored compression metadata.

    Raises:
        StorageError: the file is missing, corrupt, tampered with, not a model file, or does not fit ``model``.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from prunequant.io import save, load
        >>> p = save(nn.Linear(3, 2), tempfile.mkdtemp() + "/lin.safetensors")
        >>> load(p, nn.Linear(3, 2)).weight.shape
        torch.Size([2, 3])

    * ``model`` given and carrying the same parametrizations (same state-dict keys): the raw state is loaded as is.
    * otherwise (``model`` rebuilt from the stored config with ``build_model`` when not given): the effective
      tensors are loaded into the plain model, so its forward equals the saved model's. Fixed pruning masks are
      re-attached (``restore_masks``); other parametrizations (e.g. fake quantizers) stay baked into the weights and
      their bit widths are set as ``prunequant_wbits``/``prunequant_abits`` so :func:`prunequant.analysis.report`
      still sees them. The stored compression metadata is available as ``model.prunequant_metadata``.
    """
    path = Path(path)
    tensors, meta = load_state(path)
    if not isinstance(meta, dict) or "parametrizations" not in meta:
        raise StorageError(f"{path}: not a prunequant model file (use load_state for plain state files)")
    raw = {k[len(_STATE):]: v for k, v in tensors.items() if k.startswith(_STATE)}
    effective = {k[len(_EFFECTIVE):]: v for k, v in tensors.items() if k.startswith(_EFFECTIVE)}
    params: dict[str, list[str]] = meta["parametrizations"]
    if model is None:
        from .models.registry import build_from_config

        model = build_from_config(meta.get("model_config"), str(path),
                                  module=str(meta.get("model_class", "")).rpartition(".")[0] or None)
        # a channel-pruned model is smaller than its constructor's: give the rebuilt layers the stored shapes
        from .core.resize import resize_to_state_dict_

        resize_to_state_dict_(model, {**raw, **effective})
    elif not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"io.load: model must be an nn.Module, got {type(model).__name__}")

    restore_act_quants_(model, meta.get("act_quant", {}), str(path))
    target_keys = set(model.state_dict().keys())
    try:
        if target_keys == set(raw):
            model.load_state_dict(raw, strict=True)
        else:
            if _parametrized(model):
                raise StorageError(f"{path}: the given {type(model).__name__} carries parametrizations that do not "
                                   f"match the saved ones ({sorted(params) or 'none'})")
            plain = {k: v for k, v in raw.items() if ".parametrizations." not in f".{k}"}
            plain.update(effective)
            model.load_state_dict(plain, strict=True)
            if restore_masks:
                _restore_masks(model, raw, params)
    except RuntimeError as e:
        raise StorageError(f"{path}: stored tensors do not fit {type(model).__name__}: {e}") from e
    apply_layer_bits_(model, meta.get("layer_bits", {}))
    model.prunequant_metadata = meta.get("compression", {})
    return model

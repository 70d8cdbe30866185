"""Shared pruning machinery: which weights are prunable, mask parametrizations, finalization, sparsity.

A pruning method attaches a :class:`MaskParametrization` to a weight with ``torch.nn.utils.parametrize``, so the
model stays an ordinary ``nn.Module`` whose forward sees the masked weight. :func:`finalize_masks_` bakes the
hard mask into the stored weight (exact zeros) and removes the parametrization.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core.chain import WeightChain, has_chain, weight_chains
from ..core.checks import check_weight
from ..core.masks import FixedMask, MaskParametrization
from ..core.targets import SUPPORTED_TYPES, Selector, compressible_weights, weight_key
from ..errors import ConfigError, LayerError, ShapeError

__all__ = [
    "SUPPORTED_TYPES",
    "FixedMask",
    "MaskParametrization",
    "apply_mask_",
    "check_weight",
    "finalize_masks_",
    "get_mask",
    "global_sparsity",
    "kept_mask",
    "layer_sparsity",
    "mask_parametrizations",
    "prunable_modules",
]

def prunable_modules(
    model: nn.Module,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] | None = None,
    types: Sequence[type[nn.Module]] | None = None,
) -> list[tuple[str, nn.Module, str]]:
    """List ``(module_name, module, param_name)`` for every prunable weight of ``model``.

    ``include`` / ``exclude`` hold module names (exact or ``fnmatch`` patterns such as ``"features.*"``) or
    module types; ``types`` restricts the supported types considered. A module named exactly in ``include``
    that is not prunable raises :class:`UnsupportedModuleError`; an exact name that does not exist raises
    :class:`ConfigError`. An empty ``include`` selects nothing. See :func:`prunequant.core.compressible_weights`.
    """
    if include is not None and len(include) == 0:
        return []
    refs = compressible_weights(model, Selector.of(include, exclude, types))
    return [(r.name, r.module, r.param_name) for r in refs]


def get_mask(module: nn.Module, param_name: str = "weight") -> MaskParametrization | None:
    """The mask parametrization on ``module.<param_name>``, or ``None`` (also when there is no such tensor)."""
    if not has_chain(module, param_name):
        return None
    return WeightChain(module, param_name).mask


def mask_parametrizations(model: nn.Module) -> list[tuple[str, nn.Module, str, MaskParametrization]]:
    """Every ``(module_name, module, param_name, mask)`` in ``model`` that carries a mask parametrization."""
    return [(c.name, c.module, c.param_name, c.mask) for c in weight_chains(model) if c.mask is not None]


def apply_mask_(
    module: nn.Module,
    param_name: str = "weight",
    mask: Tensor | MaskParametrization | None = None,
    *,
    layer_name: str | None = None,
) -> MaskParametrization:
    """Attach (or replace) the pruning mask on ``module.<param_name>`` and return the parametrization.

    ``mask`` is a boolean keep-tensor (wrapped in :class:`FixedMask`; an existing FixedMask is updated in place,
    which suits gradual schedules) or a :class:`MaskParametrization`. The weight is validated first
    (NaN/Inf → :class:`LayerError`, wrong mask shape → :class:`ShapeError`).
    """
    layer = layer_name or type(module).__name__
    if not hasattr(module, param_name):
        raise ConfigError(f"layer '{layer}' has no parameter '{param_name}'")
    raw = WeightChain(module, param_name, layer).original
    check_weight(raw.detach(), weight_key(layer, param_name))
    if mask is None:
        raise ConfigError(f"layer '{layer}': apply_mask_ needs a mask tensor or MaskParametrization")
    if isinstance(mask, Tensor):
        if tuple(mask.shape) != tuple(raw.shape):
            raise ShapeError(f"layer '{layer}.{param_name}': mask shape {tuple(mask.shape)} != weight shape "
                             f"{tuple(raw.shape)}")
        existing = get_mask(module, param_name)
        if isinstance(existing, FixedMask):
            existing.mask.copy_(mask.to(device=existing.mask.device, dtype=torch.bool))
            return existing
        par: MaskParametrization = FixedMask(mask.to(raw.device))
    elif isinstance(mask, MaskParametrization):
        par = mask
    else:
        raise ConfigError(f"layer '{layer}': mask must be a Tensor or MaskParametrization, got "
                          f"{type(mask).__name__}")
    chain = WeightChain(module, param_name, layer)
    if chain.mask is not None:
        module.parametrizations[param_name][chain.index(chain.mask)] = par
    else:
        parametrize.register_parametrization(module, param_name, par)
    return par


@torch.no_grad()
def kept_mask(module: nn.Module, param_name: str = "weight") -> Tensor:
    """Boolean tensor of weights that are non-zero after pruning (hard mask applied, exact zeros counted)."""
    chain = WeightChain(module, param_name)
    mask = chain.mask
    if mask is None:
        return chain.effective() != 0
    x = chain.input_of(mask)
    return mask.hard_mask(x).to(torch.bool) & (x != 0)


@torch.no_grad()
def finalize_masks_(model: nn.Module) -> nn.Module:
    """Bake every hard mask into its weight (exact zeros) and remove the mask parametrization.

    The mask must be the first parametrization on its weight (prune before quantizing); other
    parametrizations stacked after it stay in place.
    """
    for chain in [c for c in weight_chains(model) if c.mask is not None]:
        name, module, pname, par = chain.name, chain.module, chain.param_name, chain.mask
        i = chain.index(par)
        if i != 0:
            raise LayerError(f"layer '{name}.{pname}': the mask parametrization must come first to be finalized "
                             f"(found at position {i})")
        plist = module.parametrizations[pname]
        orig = chain.original
        keep = par.hard_mask(orig).to(device=orig.device, dtype=torch.bool)
        orig.mul_(keep.to(orig.dtype))
        if len(plist) == 1:
            parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
        else:
            del plist[0]
    return model


def layer_sparsity(
    model: nn.Module,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] | None = None,
) -> dict[str, float]:
    """Fraction of zero (or masked-out) weights per prunable tensor, keyed ``"module.param"``."""
    out = {}
    for name, module, pname in prunable_modules(model, include, exclude):
        k = kept_mask(module, pname)
        out[weight_key(name, pname)] = 1.0 - float(k.sum()) / k.numel()
    return out


def global_sparsity(
    model: nn.Module,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] | None = None,
) -> float:
    """Fraction of zero (or masked-out) weights over all prunable tensors of ``model``."""
    kept = total = 0
    for _, module, pname in prunable_modules(model, include, exclude):
        k = kept_mask(module, pname)
        kept += int(k.sum())
        total += k.numel()
    if total == 0:
        raise LayerError(f"{type(model).__name__} has no prunable weights")
    return 1.0 - kept / total

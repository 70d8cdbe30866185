"""Shared pruning machinery: which weights are prunable, mask parametrizations, finalization, sparsity.

A pruning method attaches a :class:`MaskParametrization` to a weight with ``torch.nn.utils.parametrize``, so the
model stays an ordinary ``nn.Module`` whose forward sees the masked weight. :func:`finalize_masks_` bakes the
hard mask into the stored weight (exact zeros) and removes the parametrization.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import ConfigError, LayerError, ShapeError, UnsupportedModuleError

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

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.GRU, nn.MultiheadAttention,
)
_RNN_WEIGHT_PREFIXES = ("weight_ih_l", "weight_hh_l", "weight_hr_l")


class MaskParametrization(nn.Module):
    """Base class of every pruning parametrization: ``forward(w)`` gives the (soft or hard) masked weight,
    ``hard_mask(w)`` the boolean keep-mask that :func:`finalize_masks_` bakes in."""

    def hard_mask(self, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class FixedMask(MaskParametrization):
    """A fixed boolean keep-mask stored as a buffer (magnitude, MAC-budget pruning, fine-tuning).

    Update it in place (``p.mask.copy_(new)``) or via :func:`apply_mask_` for gradual schedules.
    Pruned weights get zero gradient because the forward multiplies by the mask.
    """

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: Tensor) -> Tensor:
        return w * self.mask.to(w.dtype)

    def hard_mask(self, w: Tensor) -> Tensor:
        return self.mask


def _weight_names(module: nn.Module) -> list[str]:
    """Names of the prunable weight tensors of a supported module (directly owned by it)."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return ["weight"]
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return [n for n in module._flat_weights_names if n.startswith(_RNN_WEIGHT_PREFIXES)]
    if isinstance(module, nn.MultiheadAttention):
        # out_proj is a Linear child and is listed on its own.
        if module._qkv_same_embed_dim:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return []


def _matches(name: str, module: nn.Module, selectors: Iterable[str | type]) -> bool:
    for s in selectors:
        if isinstance(s, type):
            if isinstance(module, s):
                return True
        elif name == s or fnmatch.fnmatchcase(name, s):
            return True
    return False


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
    :class:`ConfigError`.
    """
    include = list(include) if include is not None else None
    exclude = list(exclude) if exclude is not None else []
    allowed = tuple(types) if types is not None else SUPPORTED_TYPES
    bad = [t for t in allowed if not (isinstance(t, type) and issubclass(t, SUPPORTED_TYPES))]
    if bad:
        raise UnsupportedModuleError(
            f"unsupported module type(s) for pruning: {', '.join(getattr(t, '__name__', str(t)) for t in bad)}; "
            f"supported: {', '.join(t.__name__ for t in SUPPORTED_TYPES)}")
    named = dict(model.named_modules())
    if include is not None:
        for s in include:
            if isinstance(s, str) and not any(c in s for c in "*?["):
                if s not in named:
                    raise ConfigError(f"include: no module named '{s}' in {type(model).__name__}")
                if not isinstance(named[s], allowed):
                    raise UnsupportedModuleError(
                        f"include: module '{s}' ({type(named[s]).__name__}) cannot be pruned; supported: "
                        f"{', '.join(t.__name__ for t in allowed)}")
    out: list[tuple[str, nn.Module, str]] = []
    for name, module in named.items():
        if not isinstance(module, allowed):
            continue
        if include is not None and not _matches(name, module, include):
            continue
        if _matches(name, module, exclude):
            continue
        for p in _weight_names(module):
            out.append((name, module, p))
    return out


def check_weight(w: Tensor, layer: str) -> None:
    """Raise :class:`LayerError` naming ``layer`` if ``w`` is empty or holds NaN/Inf."""
    if w.numel() == 0:
        raise LayerError(f"layer '{layer}': weight is empty")
    if not torch.isfinite(w).all():
        n_bad = int((~torch.isfinite(w)).sum())
        raise LayerError(f"layer '{layer}': weight has {n_bad} NaN/Inf value(s)")


def _mask_index(module: nn.Module, param_name: str) -> int | None:
    if not parametrize.is_parametrized(module, param_name):
        return None
    for i, p in enumerate(module.parametrizations[param_name]):
        if isinstance(p, MaskParametrization):
            return i
    return None


def get_mask(module: nn.Module, param_name: str = "weight") -> MaskParametrization | None:
    """The mask parametrization on ``module.<param_name>``, or ``None``."""
    i = _mask_index(module, param_name)
    return None if i is None else module.parametrizations[param_name][i]


def _mask_input(module: nn.Module, param_name: str, index: int) -> Tensor:
    """The tensor that enters the mask parametrization (original passed through earlier parametrizations)."""
    plist = module.parametrizations[param_name]
    x = plist.original
    for p in list(plist)[:index]:
        x = p(x)
    return x


def _raw_weight(module: nn.Module, param_name: str) -> Tensor:
    if parametrize.is_parametrized(module, param_name):
        return module.parametrizations[param_name].original
    return getattr(module, param_name)


def mask_parametrizations(model: nn.Module) -> list[tuple[str, nn.Module, str, MaskParametrization]]:
    """Every ``(module_name, module, param_name, mask)`` in ``model`` that carries a mask parametrization."""
    out = []
    for name, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        for pname in list(plists.keys()):
            m = get_mask(module, pname)
            if m is not None:
                out.append((name, module, pname, m))
    return out


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
    raw = _raw_weight(module, param_name)
    check_weight(raw.detach(), f"{layer}.{param_name}")
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
    i = _mask_index(module, param_name)
    if i is not None:
        module.parametrizations[param_name][i] = par
    else:
        parametrize.register_parametrization(module, param_name, par)
    return par


@torch.no_grad()
def kept_mask(module: nn.Module, param_name: str = "weight") -> Tensor:
    """Boolean tensor of weights that are non-zero after pruning (hard mask applied, exact zeros counted)."""
    i = _mask_index(module, param_name)
    if i is None:
        return getattr(module, param_name) != 0
    x = _mask_input(module, param_name, i)
    return module.parametrizations[param_name][i].hard_mask(x).to(torch.bool) & (x != 0)


@torch.no_grad()
def finalize_masks_(model: nn.Module) -> nn.Module:
    """Bake every hard mask into its weight (exact zeros) and remove the mask parametrization.

    The mask must be the first parametrization on its weight (prune before quantizing); other
    parametrizations stacked after it stay in place.
    """
    for name, module, pname, par in mask_parametrizations(model):
        i = _mask_index(module, pname)
        if i != 0:
            raise LayerError(f"layer '{name}.{pname}': the mask parametrization must come first to be finalized "
                             f"(found at position {i})")
        plist = module.parametrizations[pname]
        orig = plist.original
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
        out[f"{name}.{pname}" if name else pname] = 1.0 - float(k.sum()) / k.numel()
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

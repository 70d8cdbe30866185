"""Magnitude pruning as a transform (no data): global (one threshold over all layers) or uniform (the same
fraction in every layer) masks, and the rate that reaches an effective-MAC reduction.

All masks are :class:`~prunequant.pruning.base.FixedMask` parametrizations attached with
:func:`~prunequant.pruning.base.apply_mask_`. Magnitudes are read from the *effective* weight (mask applied), so
weights pruned earlier stay pruned when the sparsity grows (gradual and iterative schedules).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...core.checks import check_weight
from ...core.targets import weight_key
from ...errors import ConfigError, LayerError
from ..base import apply_mask_, prunable_modules

SCOPES = ("global", "uniform")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


@torch.no_grad()
def _targets(model: nn.Module, include, exclude) -> list[tuple[str, nn.Module, str, Tensor]]:
    """(layer, module, param, |effective weight|) for every prunable tensor; NaN/Inf -> LayerError."""
    out = []
    for name, module, pname in prunable_modules(model, include, exclude):
        layer = weight_key(name, pname)
        w = getattr(module, pname).detach()  # effective weight: existing masks applied
        check_weight(w, layer)
        out.append((layer, module, pname, w.abs()))
    if not out:
        raise LayerError(f"{type(model).__name__}: no prunable layers selected (include={include}, "
                         f"exclude={exclude})")
    return out


def _smallest_k_mask(mag: Tensor, k: int) -> Tensor:
    """Keep-mask that prunes exactly the ``k`` smallest entries of ``mag`` (ties broken by position)."""
    keep = torch.ones(mag.numel(), dtype=torch.bool, device=mag.device)
    if k > 0:
        idx = torch.sort(mag.reshape(-1), stable=True).indices[:k]
        keep[idx] = False
    return keep.reshape(mag.shape)


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                    include: Sequence[str | type] | None = None,
                    exclude: Sequence[str | type] | None = None) -> dict[str, Tensor]:
    """Keep-masks (keyed ``"module.param"``) pruning a fraction ``sparsity`` of the weights by magnitude.

    ``scope="global"``: the ``sparsity * total`` smallest magnitudes over all selected tensors (one sort).
    ``scope="uniform"``: ``round(sparsity * N_l)`` smallest in each tensor.
    """
    _check_fraction("sparsity", sparsity)
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
    items = _targets(model, include, exclude)
    if scope == "uniform":  # every tensor keeps at least its largest weight
        return {layer: _smallest_k_mask(m, min(round(sparsity * m.numel()), m.numel() - 1))
                for layer, _, _, m in items}
    flat = torch.cat([m.reshape(-1).float().cpu() for _, _, _, m in items])
    keep = _smallest_k_mask(flat, min(round(sparsity * flat.numel()), flat.numel() - 1))  # keep >= 1 weight
    out, offset = {}, 0
    for layer, _, _, m in items:
        out[layer] = keep[offset:offset + m.numel()].reshape(m.shape).to(m.device)
        offset += m.numel()
    return out


@torch.no_grad()
def apply_magnitude_masks_(model: nn.Module, sparsity: float, scope: str = "global",
                           include: Sequence[str | type] | None = None,
                           exclude: Sequence[str | type] | None = None) -> dict[str, float]:
    """Prune ``model`` in place (FixedMask on every selected tensor); returns the sparsity per tensor."""
    masks = magnitude_masks(model, sparsity, scope, include, exclude)
    for name, module, pname in prunable_modules(model, include, exclude):
        layer = weight_key(name, pname)
        apply_mask_(module, pname, masks[layer], layer_name=layer)
    return {k: 1.0 - float(m.float().mean()) for k, m in masks.items()}


def effective_mac_reduction(model: nn.Module, example_input: Any, dense_macs: float | None = None) -> float:
    """1 - effective MACs / dense MACs, both as :func:`prunequant.analysis.report` counts them."""
    from ...analysis import report

    tot = report(model, example_input).total
    dense = tot.macs if dense_macs is None else dense_macs
    if not dense > 0:
        raise LayerError(f"{type(model).__name__}: the report counts no MACs")
    return 1.0 - float(tot.effective_macs) / float(dense)


@torch.no_grad()
def sparsity_for_mac_reduction(model: nn.Module, mac_reduction: float, example_input: Any, scope: str = "global",
                               include: Sequence[str | type] | None = None,
                               exclude: Sequence[str | type] | None = None, tol: float = 1e-4,
                               max_iter: int = 40) -> tuple[float, float]:
    """Bisect the magnitude-pruning rate whose masks give ``mac_reduction`` in the report (model untouched).

    Returns ``(sparsity, achieved_reduction)``: the smallest rate reaching the target (within ``tol`` on the rate).
    """
    _check_fraction("mac_reduction", mac_reduction)
    from ...analysis import report

    probe = copy.deepcopy(model)
    dense = float(report(probe, example_input).total.macs)

    probe_targets = prunable_modules(probe, include, exclude)

    def achieved(s: float) -> float:  # masks always from the untouched model's weights
        masks = magnitude_masks(model, s, scope, include, exclude)
        for name, module, pname in probe_targets:
            layer = weight_key(name, pname)
            apply_mask_(module, pname, masks[layer], layer_name=layer)
        return effective_mac_reduction(probe, example_input, dense)

    lo, hi = 0.0, 1.0
    top = achieved(hi)
    if top < mac_reduction:
        raise ConfigError(f"MAC reduction {mac_reduction:.4f} is unreachable by {scope} magnitude pruning of the "
                          f"selected layers (at most {top:.4f})")
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if achieved(mid) >= mac_reduction:
            hi = mid
        else:
            lo = mid
    return hi, achieved(hi)

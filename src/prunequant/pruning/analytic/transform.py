"""The analytic-threshold transform, no data needed: attach h(w) to every selected weight, make the masks hard,
and read the per-layer state. Training goes through :class:`AnalyticThresholdPlugin`; the full schedule through
:func:`prunequant.pruning.analytic.recipe.fit_analytic_`."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.checks import check_weight
from ...core.targets import weight_key
from ...errors import LayerError
from ..base import apply_mask_, get_mask, mask_parametrizations, prunable_modules
from .config import AnalyticThresholdConfig
from .controller import clamp_alpha_, project_min_density_
from .parametrization import AnalyticThreshold


def attach_analytic_thresholds_(model: nn.Module, config: AnalyticThresholdConfig) -> list[tuple]:
    """Put an :class:`AnalyticThreshold` on every selected weight; returns (name, parametrization, raw weight)."""
    items = []
    for name, module, pname in prunable_modules(model, config.include, config.exclude, config.types):
        layer = weight_key(name, pname)
        if get_mask(module, pname) is not None:
            raise LayerError(f"layer '{layer}' already carries a pruning mask; finalize it first")
        w = getattr(module, pname).detach()
        check_weight(w, layer)
        std = float(w.float().std()) if w.numel() > 1 else 0.0
        if not std > 1e-6 * float(w.abs().max()):  # constant up to float rounding
            raise LayerError(f"layer '{layer}': weight has zero variance, cannot initialise the threshold")
        groups = w.shape[0] if config.granularity == "channel_threshold" else None
        shape = (groups,) if groups else ()
        par = AnalyticThreshold(torch.full(shape, config.alpha_init * std), torch.full(shape, config.beta_init * std),
                                config.function, ref_std=std).to(w.device)
        apply_mask_(module, pname, par, layer_name=layer)
        items.append((layer, par, module.parametrizations[pname].original))
    if not items:
        raise LayerError(f"{type(model).__name__}: no prunable layers selected (include={config.include}, "
                         f"exclude={config.exclude})")
    pairs = [(p, w) for _, p, w in items]
    project_min_density_(pairs, config.min_density)
    if config.alpha_max_ratio is not None:
        clamp_alpha_(pairs, config.alpha_max_ratio)
    return items


def harden_masks_(model: nn.Module) -> int:
    """Replace every AnalyticThreshold by a FixedMask holding its hard mask |w| > β; returns how many."""
    n = 0
    for name, module, pname, par in mask_parametrizations(model):
        if isinstance(par, AnalyticThreshold):
            raw = module.parametrizations[pname].original
            apply_mask_(module, pname, par.hard_mask(raw).detach(), layer_name=weight_key(name, pname))
            n += 1
    return n


def layer_table(items: list[tuple]) -> list[dict[str, Any]]:
    """Per-layer rows (params, kept, sparsity, α, β, β/σ) of (name, parametrization, raw weight) triples."""
    rows = []
    with torch.no_grad():
        for name, par, w in items:
            keep = par.hard_mask(w)
            rows.append({"layer": name, "params": w.numel(), "kept": int(keep.sum()),
                         "sparsity": 1.0 - float(keep.float().mean()),
                         "alpha": par.alpha.mean().item(), "beta": par.beta.mean().item(),
                         "beta_over_std": (par.beta.mean() / par.ref_std).item()})
    return rows

"""``prune_(model, AnalyticThresholdConfig(...), train=loader)``: attach h, learn weights + thresholds, make the
mask hard, fine-tune with it fixed, and finalize to exact zeros."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...api import register_handler
from ...errors import LayerError
from ...training import TrainConfig, Trainer, accuracy, evaluate
from ..base import (
    apply_mask_,
    check_weight,
    finalize_masks_,
    get_mask,
    global_sparsity,
    mask_parametrizations,
    prunable_modules,
)
from .config import AnalyticThresholdConfig
from .controller import clamp_alpha_, hard_sparsity, project_min_density_, snap_to_target_
from .parametrization import AnalyticThreshold
from .plugin import AnalyticThresholdPlugin


@dataclass
class AnalyticPruningResult:
    """What :func:`prune_analytic_` returns: the plugin (for training by hand), histories and per-layer table."""

    plugin: AnalyticThresholdPlugin
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    sparsity_before_snap: float | None = None
    snap_factor: float | None = None
    sparsity: float | None = None
    val_metric_soft: float | None = None
    val_metric_hard: float | None = None


def attach_analytic_thresholds_(model: nn.Module, config: AnalyticThresholdConfig) -> list[tuple]:
    """Put an :class:`AnalyticThreshold` on every selected weight; returns (name, parametrization, raw weight)."""
    items = []
    for name, module, pname in prunable_modules(model, config.include, config.exclude, config.types):
        layer = f"{name}.{pname}" if name else pname
        if get_mask(module, pname) is not None:
            raise LayerError(f"layer '{layer}' already carries a pruning mask; finalize it first")
        w = getattr(module, pname).detach()
        check_weight(w, layer)
        std = float(w.float().std()) if w.numel() > 1 else 0.0
        if not std > 1e-6 * float(w.abs().max()):  # constant up to float rounding
            raise LayerError(f"layer '{layer}': weight has zero variance, cannot initialise the threshold")
        groups = w.shape[0] if config.granularity == "channel" else None
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
            apply_mask_(module, pname, par.hard_mask(raw).detach(), layer_name=f"{name}.{pname}")
            n += 1
    return n


def layer_table(items: list[tuple]) -> list[dict[str, Any]]:
    rows = []
    with torch.no_grad():
        for name, par, w in items:
            keep = par.hard_mask(w)
            rows.append({"layer": name, "params": w.numel(), "kept": int(keep.sum()),
                         "sparsity": 1.0 - float(keep.float().mean()),
                         "alpha": par.alpha.mean().item(), "beta": par.beta.mean().item(),
                         "beta_over_std": (par.beta.mean() / par.ref_std).item()})
    return rows


def finalize_(model: nn.Module) -> nn.Module:
    """Make every analytic mask hard (|w| > β), bake it into the weights (exact zeros) and remove the
    parametrization, leaving a plain ``nn.Module``. Other mask parametrizations are finalized the same way."""
    return finalize_masks_(model)


def _phase_config(base: TrainConfig, epochs: int, sub: str) -> TrainConfig:
    ckpt = str(Path(base.checkpoint_dir) / sub) if base.checkpoint_dir else None
    return dataclasses.replace(base, epochs=epochs, checkpoint_dir=ckpt)


@register_handler(AnalyticThresholdConfig, finalize=finalize_)
def prune_analytic_(model: nn.Module, config: AnalyticThresholdConfig, train: DataLoader | None = None,
                    val: DataLoader | None = None, train_config: TrainConfig | None = None,
                    loss_fn: Callable = F.cross_entropy, metric: Callable = accuracy) -> AnalyticPruningResult:
    """Self-prune ``model`` in place.

    Without ``train`` only the parametrizations are attached: train with ``result.plugin`` in your own
    :class:`~prunequant.training.Trainer`, then call :func:`finalize_`. With ``train``: ``config.epochs`` of
    joint weight/threshold training, optional snap to the target, ``config.finetune_epochs`` with the hard mask
    fixed, then (``config.finalize``) exact zeros. ``train_config`` supplies optimizer, lr, seed, device, checkpoints (its ``epochs`` is overridden).
    """
    items = attach_analytic_thresholds_(model, config)
    base = train_config or TrainConfig(lr=1e-3, progress=False)
    steps = config.epochs * len(train) if train is not None else None
    plugin = AnalyticThresholdPlugin(items, config, total_steps=steps)
    result = AnalyticPruningResult(plugin=plugin)
    if train is None:
        return result
    trainer = Trainer(model, _phase_config(base, config.epochs, "prune"), loss_fn=loss_fn, plugins=[plugin],
                      metric=metric)
    result.history = [{"phase": "prune", **h} for h in trainer.fit(train, val)]
    pairs = [(p, w) for _, p, w in items]
    if val is not None:
        result.val_metric_soft = evaluate(model, val, metric, device=base.device)
    result.sparsity_before_snap = hard_sparsity(pairs)
    if config.snap_to_target and config.target_sparsity is not None:
        result.snap_factor = snap_to_target_(pairs, config.target_sparsity, config.min_density)
    result.layers = layer_table(items)
    harden_masks_(model)
    if val is not None:
        result.val_metric_hard = evaluate(model, val, metric, device=base.device)
    if config.finetune_epochs > 0:
        ft = Trainer(model, _phase_config(base, config.finetune_epochs, "finetune"), loss_fn=loss_fn,
                     metric=metric)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(train, val)]
    result.sparsity = global_sparsity(model, config.include, config.exclude)
    if config.finalize:
        finalize_(model)
    return result

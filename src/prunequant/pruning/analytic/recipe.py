"""The analytic-threshold training recipe: ``config.epochs`` of joint weight/threshold training, optional snap to
the target sparsity, hard masks, ``config.finetune_epochs`` with the masks fixed, then (``config.finalize``)
exact zeros."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ...training import Fit, Trainer, evaluate, phase_config
from ..base import finalize_masks_, global_sparsity
from .config import AnalyticThresholdConfig
from .controller import hard_sparsity, snap_to_target_
from .plugin import AnalyticThresholdPlugin
from .transform import attach_analytic_thresholds_, harden_masks_, layer_table


@dataclass
class AnalyticPruningResult:
    """What the analytic recipe returns: the plugin, histories, per-layer table and the metrics along the way."""

    plugin: AnalyticThresholdPlugin
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    sparsity_before_snap: float | None = None
    snap_factor: float | None = None
    sparsity: float | None = None
    val_metric_soft: float | None = None
    val_metric_hard: float | None = None


def fit_analytic_(model: nn.Module, config: AnalyticThresholdConfig, fit: Fit) -> AnalyticPruningResult:
    """Self-prune ``model`` in place with the full analytic schedule on ``fit``'s data.

    ``fit.train_config`` supplies optimizer, lr, seed, device, checkpoints (its ``epochs`` is set per phase).
    """
    items = attach_analytic_thresholds_(model, config)
    base = fit.base(lr=1e-3)
    per_epoch = fit.steps_per_epoch()
    plugin = AnalyticThresholdPlugin(items, config, total_steps=config.epochs * per_epoch if per_epoch else None)
    result = AnalyticPruningResult(plugin=plugin)
    trainer = Trainer(model, phase_config(base, config.epochs, "prune"), loss_fn=fit.loss_fn, plugins=[plugin],
                      metric=fit.metric)
    result.history = [{"phase": "prune", **h} for h in trainer.fit(fit.train, fit.val)]
    pairs = [(p, w) for _, p, w in items]
    if fit.val is not None:
        result.val_metric_soft = evaluate(model, fit.val, fit.metric, device=base.device)
    result.sparsity_before_snap = hard_sparsity(pairs)
    if config.snap_to_target and config.target_sparsity is not None:
        result.snap_factor = snap_to_target_(pairs, config.target_sparsity, config.min_density)
    result.layers = layer_table(items)
    harden_masks_(model)
    if fit.val is not None:
        result.val_metric_hard = evaluate(model, fit.val, fit.metric, device=base.device)
    if config.finetune_epochs > 0:
        ft = Trainer(model, phase_config(base, config.finetune_epochs, "finetune"), loss_fn=fit.loss_fn,
                     metric=fit.metric)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(fit.train, fit.val)]
    result.sparsity = global_sparsity(model, config.include, config.exclude)
    if config.finalize:
        finalize_masks_(model)
    return result

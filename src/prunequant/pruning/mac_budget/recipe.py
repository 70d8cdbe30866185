"""The MAC-budget recipe: prune -> retrain rounds until the report's effective-MAC reduction reaches the target
(US 2019/0050735 A1, reconstructed; docs/mac_budget_pruning.md)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ...training import Fit, TrainConfig, Trainer, evaluate, phase_config
from .config import MacBudgetConfig
from .history import MacBudgetResult
from .transform import MacBudgetPruner


def _retrain(model: nn.Module, fit: Fit, base: TrainConfig, config: MacBudgetConfig, rnd: int) -> None:
    if config.retrain_epochs == 0:
        return
    if callable(fit.train) and not hasattr(fit.train, "__iter__"):
        fit.train(model, rnd)
        return
    cfg = dataclasses.replace(phase_config(base, config.retrain_epochs, f"round{rnd}"), seed=base.seed + rnd)
    Trainer(model, cfg, loss_fn=fit.loss_fn, metric=fit.metric).fit(fit.train, fit.val)


def run_mac_budget_(model: nn.Module, config: MacBudgetConfig, example_input: Any, fit: Fit | None = None,
                    history_path: str | Path | None = None) -> MacBudgetResult:
    """All rounds of MAC-budget pruning on ``model`` in place, retraining ``config.retrain_epochs`` per round on
    ``fit`` (a DataLoader, or a callable ``train(model, round)`` doing its own retraining); without ``fit`` the
    rounds run back to back without retraining. Masks stay FixedMask parametrizations (``finalize_`` bakes them).

    ``fit.train_config`` (default lr ``config.retrain_lr``) supplies optimizer, seed (round r uses seed + r),
    device and checkpoints; ``fit.val`` gives the metric before/after each retrain; ``history_path``: JSON history
    written after every round.
    """
    pruner = MacBudgetPruner(model, config, example_input, verbose=fit.verbose if fit is not None else False)
    base = fit.base(lr=config.retrain_lr) if fit is not None else TrainConfig(progress=False)
    metric: Callable | None = fit.metric if fit is not None else None
    while not pruner.done:
        rec = pruner.prune_round()
        if fit is not None and fit.val is not None:
            rec.val_metric_pruned = evaluate(model, fit.val, metric, device=base.device)
        if fit is not None:
            _retrain(model, fit, base, config, rec.round)
            if fit.val is not None and config.retrain_epochs > 0:
                rec.val_metric_retrained = evaluate(model, fit.val, metric, device=base.device)
        pruner.result.val_metric = (rec.val_metric_retrained if rec.val_metric_retrained is not None
                                    else rec.val_metric_pruned)
        pruner.log_round(rec)
        if history_path is not None:
            pruner.result.to_json(history_path)
    return pruner.finish()

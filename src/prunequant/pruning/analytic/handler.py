"""``prune_(model, AnalyticThresholdConfig(...))``: attach and return the plugin, or with data run the recipe."""
from __future__ import annotations

from typing import Any

from torch import nn

from ...registry import register_handler
from ...training import Fit
from ..base import finalize_masks_
from .config import AnalyticThresholdConfig
from .plugin import AnalyticThresholdPlugin
from .recipe import AnalyticPruningResult, fit_analytic_
from .transform import attach_analytic_thresholds_


@register_handler(AnalyticThresholdConfig, verb="prune", finalize=finalize_masks_, order=20)
def prune_analytic_(model: nn.Module, config: AnalyticThresholdConfig, fit: Fit | None = None,
                    total_steps: int | None = None,
                    example_input: Any = None) -> AnalyticThresholdPlugin | AnalyticPruningResult:
    """Self-prune ``model`` in place.

    Without ``fit``: attach the thresholds and return the :class:`AnalyticThresholdPlugin` for your own loop
    (``total_steps``: the optimizer steps you will train for; they set the setpoint ramp and α annealing), then
    call :func:`prunequant.finalize_`. With ``fit``: run :func:`~.recipe.fit_analytic_` and return its result.
    ``granularity="channel"`` runs structured pruning (:func:`~prunequant.pruning.structured.prune_channels_analytic_`,
    ``example_input``: an input of deployment shape, default one sample of ``fit.train``).
    """
    if config.granularity == "channel":
        from ..structured import prune_channels_analytic_

        return prune_channels_analytic_(model, config, fit, example_input=example_input, total_steps=total_steps)
    if fit is not None:
        return fit_analytic_(model, config, fit)
    items = attach_analytic_thresholds_(model, config)
    return AnalyticThresholdPlugin(items, config, total_steps=total_steps)

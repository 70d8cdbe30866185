"""``prune_(model, MacBudgetConfig(...))``: prune -> retrain rounds to an effective-MAC target."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ...registry import register_handler
from ...training import Fit
from ...training.fit import example_input as _example_from
from ..base import finalize_masks_
from .config import MacBudgetConfig
from .history import MacBudgetResult
from .recipe import run_mac_budget_
from .transform import round_targets  # noqa: F401  (re-exported)


@register_handler(MacBudgetConfig, verb="prune", finalize=finalize_masks_, order=20)
def prune_mac_budget_(model: nn.Module, config: MacBudgetConfig, fit: Fit | None = None, example_input: Any = None,
                      history_path: str | Path | None = None) -> MacBudgetResult:
    """MAC-budget-prune ``model`` in place (masks stay FixedMask parametrizations; ``finalize_`` bakes them).

    ``example_input``: the input MACs are counted for (default: one sample of ``fit.train``). Without ``fit``
    the rounds run without retraining; for your own loop use :class:`MacBudgetPlugin`. ``granularity="channel"``
    removes whole channels (:func:`~prunequant.pruning.structured.prune_channels_mac_budget_`).
    """
    if config.granularity == "channel":
        from ..structured import prune_channels_mac_budget_

        return prune_channels_mac_budget_(model, config, fit, example_input=example_input)
    if example_input is None and fit is not None and hasattr(fit.train, "__iter__"):
        example_input = _example_from(fit.train, "MAC-budget pruning")
    return run_mac_budget_(model, config, example_input, fit, history_path)

"""Magnitude pruning with a fine-tune: the one-shot transform, then ``config.finetune_epochs`` with masks fixed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ...errors import ConfigError
from ...training import Fit, Trainer, phase_config
from ...training.fit import example_input as _example_input
from ..base import finalize_masks_, global_sparsity
from .config import MagnitudeConfig
from .transform import apply_magnitude_masks_, sparsity_for_mac_reduction


@dataclass
class MagnitudeResult:
    """What magnitude pruning returns.

    ``sparsity``: global sparsity of the selected weights; ``layers``: sparsity per weight; ``mac_reduction``:
    the effective-MAC reduction reached (``MagnitudeConfig(mac_reduction=...)`` only); ``history``: fine-tune log.
    """

    sparsity: float
    layers: dict[str, float] = field(default_factory=dict)
    mac_reduction: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def magnitude_prune_(model: nn.Module, config: MagnitudeConfig, example_input: Any = None) -> MagnitudeResult:
    """The transform: masks at ``config.sparsity`` (or the rate reaching ``config.mac_reduction`` for
    ``example_input``); no data, no training, no finalization."""
    s, red = config.sparsity, None
    if config.mac_reduction is not None:
        if example_input is None:
            raise ConfigError("MagnitudeConfig(mac_reduction=...) needs example_input= to count MACs")
        s, red = sparsity_for_mac_reduction(model, config.mac_reduction, example_input, config.scope,
                                            config.include, config.exclude)
    layers = apply_magnitude_masks_(model, s, config.scope, config.include, config.exclude)
    return MagnitudeResult(sparsity=global_sparsity(model, config.include, config.exclude), layers=layers,
                           mac_reduction=red)


def fit_magnitude_(model: nn.Module, config: MagnitudeConfig, fit: Fit | None,
                   example_input: Any = None) -> MagnitudeResult:
    """Prune, fine-tune ``config.finetune_epochs`` on ``fit`` (if given) and finalize if ``config.finalize``."""
    if example_input is None and config.mac_reduction is not None and fit is not None:
        example_input = _example_input(fit.train, "MagnitudeConfig(mac_reduction=...)")
    result = magnitude_prune_(model, config, example_input)
    if fit is not None and config.finetune_epochs > 0:
        cfg = phase_config(fit.base(lr=1e-3), config.finetune_epochs, "finetune")
        result.history = Trainer(model, cfg, loss_fn=fit.loss_fn, metric=fit.metric).fit(fit.train, fit.val)
    if config.finalize:
        finalize_masks_(model)
    return result

"""Configuration of one-shot magnitude pruning (baseline)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import ConfigError
from .transform import SCOPES, _check_fraction


@dataclass
class MagnitudeConfig:
    """One-shot magnitude pruning (baseline). Give ``sparsity`` (fraction of prunable weights) or
    ``mac_reduction`` (fraction of effective MACs, rate found by bisection with the report; needs
    ``example_input``). ``scope``: "global" or "uniform". ``finetune_epochs`` with masks fixed if ``train`` is
    given; ``finalize`` bakes exact zeros."""

    sparsity: float | None = None
    mac_reduction: float | None = None
    scope: str = "global"
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    finetune_epochs: int = 0
    finalize: bool = False

    def __post_init__(self):
        if (self.sparsity is None) == (self.mac_reduction is None):
            raise ConfigError("MagnitudeConfig needs exactly one of sparsity or mac_reduction")
        name = "sparsity" if self.sparsity is not None else "mac_reduction"
        value = self.sparsity if self.sparsity is not None else self.mac_reduction
        _check_fraction(name, value)
        if value >= 1.0:  # like the other pruning configs: pruning everything leaves no model
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")

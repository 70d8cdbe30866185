"""``prune_(model, MagnitudeConfig(...))``: one-shot masks, with data also the fine-tune."""
from __future__ import annotations

from typing import Any

from torch import nn

from ...registry import register_handler
from ...training import Fit
from ..base import finalize_masks_
from .config import MagnitudeConfig
from .recipe import MagnitudeResult, fit_magnitude_


@register_handler(MagnitudeConfig, verb="prune", finalize=finalize_masks_, order=20)
def prune_magnitude_(model: nn.Module, config: MagnitudeConfig, fit: Fit | None = None,
                     example_input: Any = None) -> MagnitudeResult:
    """Magnitude-prune ``model`` in place (``example_input``: needed for ``mac_reduction`` without data)."""
    return fit_magnitude_(model, config, fit, example_input)

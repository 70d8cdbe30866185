"""``prune_quantize_(model, JointConfig(...))``: attach and return the plugin, or with data run the recipe."""
from __future__ import annotations

from typing import Any, Iterable

from torch import nn

from ..registry import register_handler
from ..training import Fit
from .config import JointConfig
from .plugin import JointPlugin
from .recipe import JointResult, fit_joint_, prepare_joint_
from .transform import finalize_joint_layers_


@register_handler(JointConfig, verb="prune_quantize", finalize=finalize_joint_layers_, order=10)
def prune_quantize_joint_(model: nn.Module, config: JointConfig, fit: Fit | None = None, example_input: Any = None,
                          calibration: Iterable | None = None, total_steps: int | None = None,
                          device: str = "cpu") -> JointPlugin | JointResult:
    """Jointly prune and mixed-precision quantize ``model`` in place.

    Without ``fit``: attach only (needs ``calibration`` batches and/or ``example_input``) and return the
    :class:`JointPlugin` for your own loop (``total_steps``: the optimizer steps you will train for, which set the
    target ramp and the τ / α schedules); then :func:`~prunequant.joint.harden_` to the targets and
    :func:`prunequant.finalize_`. With ``fit``: run :func:`~prunequant.joint.recipe.fit_joint_`.
    """
    if fit is not None:
        return fit_joint_(model, config, fit, example_input, calibration)
    return prepare_joint_(model, config, calibration, example_input, device, total_steps)

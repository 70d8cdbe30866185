"""AGP gradual magnitude pruning (Zhu & Gupta 2017) as a TrainPlugin for any training loop."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ...errors import ConfigError
from ...training import TrainPlugin
from ..base import apply_mask_, get_mask, global_sparsity
from .transform import SCOPES, _check_fraction, _targets, apply_magnitude_masks_


def agp_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int,
                 initial_sparsity: float = 0.0) -> float:
    """AGP schedule: s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3, clamped to [t0, t1]."""
    if step <= start_step:
        return initial_sparsity if step == start_step else 0.0
    frac = min(1.0, (step - start_step) / max(end_step - start_step, 1))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


class AGPPlugin(TrainPlugin):
    """Gradual magnitude pruning during training: every ``frequency`` steps in [start_step, end_step] the masks
    are recomputed at the AGP sparsity for that step (``scope`` global or uniform).

    The constructor attaches a FixedMask (keeping the current non-zeros) to every selected tensor that has none,
    so build the plugin before the optimizer / :class:`~prunequant.training.Trainer`: the masks are buffers in the model
    state and resume from checkpoints exactly; the plugin state holds the last applied sparsity.
    """

    name = "agp"

    def __init__(self, model: nn.Module, final_sparsity: float, end_step: int, start_step: int = 0,
                 frequency: int = 10, initial_sparsity: float = 0.0, scope: str = "global",
                 include: Sequence[str | type] | None = None, exclude: Sequence[str | type] | None = None):
        _check_fraction("final_sparsity", final_sparsity)
        _check_fraction("initial_sparsity", initial_sparsity)
        if not 0 <= start_step < end_step or frequency < 1:
            raise ConfigError(f"need 0 <= start_step < end_step and frequency >= 1 (got {start_step}, "
                              f"{end_step}, {frequency})")
        if scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.final_sparsity, self.initial_sparsity = final_sparsity, initial_sparsity
        self.start_step, self.end_step, self.frequency = start_step, end_step, frequency
        self.scope, self.include, self.exclude = scope, include, exclude
        for layer, module, pname, mag in _targets(model, include, exclude):
            if get_mask(module, pname) is None:
                apply_mask_(module, pname, mag != 0, layer_name=layer)
        self.current = global_sparsity(model, include, exclude)

    def sparsity_at(self, step: int) -> float:
        return agp_sparsity(step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        if step < self.start_step or step > self.end_step:
            return
        if (step - self.start_step) % self.frequency and step != self.end_step:
            return
        s = self.sparsity_at(step)
        if s > self.current:
            apply_magnitude_masks_(model, s, self.scope, self.include, self.exclude)
            self.current = s

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict) -> dict | None:
        return {"sparsity": global_sparsity(model, self.include, self.exclude)}

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])

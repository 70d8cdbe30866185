"""Hook points through which a compression method takes part in training."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TrainPlugin:
    """Base class; override what the method needs. All hooks are optional.

    * ``param_groups(model)``: extra optimizer groups (e.g. thresholds with their own lr). Parameters listed here
      are removed from the default group.
    * ``loss(model, step)``: an extra loss term added to the task loss (e.g. a sparsity penalty).
    * ``on_step_end(trainer, step)`` / ``on_epoch_end(trainer, epoch, logs)``: controllers, schedules, logging;
      ``on_epoch_end`` may return a dict of extra log columns.
    * ``state_dict()`` / ``load_state_dict(d)``: controller state saved in checkpoints so resume is exact.
    """

    name: str = "plugin"

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return []

    def loss(self, model: nn.Module, step: int) -> torch.Tensor | None:
        return None

    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, step: int) -> None:
        pass

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

"""What a training recipe needs besides the method config: data, loss, metric and run options.

:class:`Fit` is the one argument through which every recipe (``prune_(model, cfg, fit=Fit(train, val))``) gets its
data; the method configs describe only the method. Small shared helpers of the recipes live here too: the
checkpoint sub-directory of a phase, an example input or a few calibration batches taken from a loader, and the
device ``"auto"`` resolution.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .device import resolve_device  # noqa: F401  (re-exported)
from .metrics import accuracy
from .trainer import TrainConfig


@dataclass
class Fit:
    """Data and run options for a training recipe.

    Args:
        train: training batches (a ``DataLoader`` or any re-iterable of ``(x, y)`` / dict batches).
        val: validation batches for the logged metric (optional).
        loss_fn: task loss ``loss_fn(outputs, targets)``.
        metric: ``metric(outputs, targets) -> float``, higher is better.
        train_config: optimizer, lr, seed, device, checkpoints, progress (the recipe sets ``epochs`` per phase).
        verbose: log per-round / per-layer tables through ``logging`` (INFO).
    """

    train: Any
    val: Any = None
    loss_fn: Callable[..., torch.Tensor] = F.cross_entropy
    metric: Callable[..., float] = accuracy
    train_config: TrainConfig | None = None
    verbose: bool = False

    def __post_init__(self):
        if self.train is None:
            raise ConfigError("Fit needs training data (train=...)")

    def base(self, **defaults: Any) -> TrainConfig:
        """The run's TrainConfig: ``train_config`` if given, else ``TrainConfig(progress=False, **defaults)``."""
        return self.train_config if self.train_config is not None else TrainConfig(progress=False, **defaults)

    def steps_per_epoch(self) -> int | None:
        try:
            return len(self.train)
        except TypeError:
            return None


def phase_config(base: TrainConfig, epochs: int, sub: str, **overrides: Any) -> TrainConfig:
    """``base`` for one phase of a recipe: ``epochs`` and checkpoints in ``checkpoint_dir/sub``."""
    ckpt = str(Path(base.checkpoint_dir) / sub) if base.checkpoint_dir else None
    return dataclasses.replace(base, epochs=epochs, checkpoint_dir=ckpt, **overrides)


def batch_input(batch: Any) -> Any:
    """The model input of one batch: ``x`` of ``(x, y, ...)``, a dict without its label keys, or the batch."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return {k: v for k, v in batch.items() if k not in ("labels", "label", "y", "target", "targets")}
    return batch


def first_batches(data: Iterable | None, n: int) -> list:
    """Up to ``n`` batches from the start of ``data`` (empty list for None)."""
    out: list = []
    if data is None:
        return out
    for b in data:
        out.append(b)
        if len(out) >= n:
            break
    return out


def example_input(data: Iterable | None, what: str = "this method") -> Any:
    """One sample of model input (batch of one) from the first batch of ``data``."""
    batches = first_batches(data, 1)
    if not batches:
        raise ConfigError(f"{what} needs example_input= (one model input) or training data to take one from")
    x = batch_input(batches[0])
    if isinstance(x, dict):
        return {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in x.items()}
    return x[:1]

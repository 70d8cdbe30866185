"""Metrics computed on a whole evaluation set: ``metric(outputs, targets) -> float`` (higher is better)."""
from __future__ import annotations

import torch


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 classification accuracy."""
    return (outputs.argmax(dim=-1) == targets).float().mean().item()


accuracy.name = "accuracy"  # type: ignore[attr-defined]


def neg_mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Negative mean squared error (so that higher is better)."""
    return -torch.mean((outputs.reshape(targets.shape).float() - targets.float()) ** 2).item()


neg_mse.name = "neg_mse"  # type: ignore[attr-defined]

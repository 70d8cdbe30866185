"""Analytic threshold functions h(w; α, β): ≈0 in a band |w| < β, ≈1 outside, edge sharpness set by α.

Both have h = 1/2 exactly at |w| = β, so the hard mask of either is |w| > β. Selected by name so the form can be
swapped if the patent text turns out to differ (the sigmoid-of-squares form is a reconstruction).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def sigmoid_sq(w: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """h(w) = sigmoid((w² − β²) / α²), the default (reconstructed) form."""
    return torch.sigmoid((w * w - beta * beta) / (alpha * alpha))


def sigmoid_abs(w: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """h(w) = sigmoid((|w| − β) / α), an alternative with the same edges."""
    return torch.sigmoid((w.abs() - beta) / alpha)


THRESHOLD_FUNCTIONS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "sigmoid_sq": sigmoid_sq,
    "sigmoid_abs": sigmoid_abs,
}

"""Mask parametrizations: the pruning half of the compressed-weight representation.

A pruning method attaches a :class:`MaskParametrization` to a weight with ``torch.nn.utils.parametrize``; the
forward sees the (soft or hard) masked weight and ``hard_mask(w)`` gives the boolean keep-mask that finalizing
bakes in. They live in ``core`` so that ``io`` and ``export`` can rebuild and read masks without importing
``pruning``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FixedMask", "MaskParametrization"]


class MaskParametrization(nn.Module):
    """Base class of every pruning parametrization: ``forward(w)`` gives the (soft or hard) masked weight,
    ``hard_mask(w)`` the boolean keep-mask that ``finalize_masks_`` bakes in."""

    def hard_mask(self, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class FixedMask(MaskParametrization):
    """A fixed boolean keep-mask stored as a buffer (magnitude, MAC-budget pruning, fine-tuning).

    Update it in place (``p.mask.copy_(new)``) or via ``pruning.apply_mask_`` for gradual schedules.
    Pruned weights get zero gradient because the forward multiplies by the mask.
    """

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: Tensor) -> Tensor:
        return w * self.mask.to(w.dtype)

    def hard_mask(self, w: Tensor) -> Tensor:
        return self.mask

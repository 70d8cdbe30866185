"""The analytic-threshold mask as a ``torch.nn.utils.parametrize`` parametrization: weight ↦ w · h(w; α, β)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..base import MaskParametrization
from .functions import THRESHOLD_FUNCTIONS


class AnalyticThreshold(MaskParametrization):
    """Soft mask w · h(w; α, β) with learnable α, β > 0 stored as ``log_alpha`` / ``log_beta``.

    One (α, β) per tensor (shape ``()``) or one per output channel (shape ``(C,)``, broadcast over dim 0).
    ``alpha_scale`` is a buffer multiplying α (annealing schedule); the hard mask is ``|w| > β``.
    """

    def __init__(self, alpha: Tensor, beta: Tensor, function: str = "sigmoid_sq", ref_std: float = 1.0):
        super().__init__()
        alpha, beta = torch.as_tensor(alpha, dtype=torch.float32), torch.as_tensor(beta, dtype=torch.float32)
        if alpha.shape != beta.shape or alpha.dim() > 1:
            raise ConfigError(f"alpha {tuple(alpha.shape)} and beta {tuple(beta.shape)} must share a shape () or (C,)")
        if not (bool((alpha > 0).all()) and bool((beta > 0).all())):
            raise ConfigError("alpha and beta must be > 0")
        if function not in THRESHOLD_FUNCTIONS:
            raise ConfigError(f"unknown threshold function {function!r}; known: {tuple(THRESHOLD_FUNCTIONS)}")
        self.function = function
        self.log_alpha = nn.Parameter(alpha.log())
        self.log_beta = nn.Parameter(beta.log())
        self.register_buffer("alpha_scale", torch.ones(()))
        self.register_buffer("ref_std", torch.tensor(float(ref_std)))

    def _view(self, p: Tensor, w: Tensor) -> Tensor:
        return p if p.dim() == 0 else p.reshape(-1, *([1] * (w.dim() - 1)))

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp() * self.alpha_scale

    @property
    def beta(self) -> Tensor:
        return self.log_beta.exp()

    def h(self, w: Tensor) -> Tensor:
        """The soft keep-function h(w) ∈ (0, 1), same shape as ``w``."""
        return THRESHOLD_FUNCTIONS[self.function](w, self._view(self.alpha, w), self._view(self.beta, w))

    def forward(self, w: Tensor) -> Tensor:
        return w * self.h(w)

    def hard_mask(self, w: Tensor) -> Tensor:
        return w.abs() > self._view(self.beta, w).detach()

    def extra_repr(self) -> str:
        return f"function={self.function}, groups={self.log_beta.numel()}"

"""Per-channel bias correction of quantized weights, as in the PWLQ reference code (``quant_weis.py``).

``w_hat <- (w_hat + (mean(w) - mean(w_hat))) * std(w) / std(w_hat)``, per output channel.

Shift first, then rescale about zero (the reference order; the rescaled mean is ``mean(w) * gain``). Both terms
are per-channel constants, so they fold into each channel's scale and offset and the integer codes are
unchanged. Channels whose quantized std is 0 keep gain 1. Note the shift moves exact zeros (pruned weights)
off zero; turn bias correction off for pruned models that must keep their zeros.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import per_channel, to_channels


def bias_correction_terms(w: Tensor, wq: Tensor, dim: int | None = 0) -> tuple[Tensor, Tensor]:
    """(shift, gain) per channel, each (C,) (0-d for ``dim=None``).

    A channel holding exact zeros (pruned weights) gets no shift, only the gain, so that its zeros stay exactly
    zero after correction and the sparsity survives quantization."""
    x, q = to_channels(w.detach(), dim).to(torch.float64), to_channels(wq.detach(), dim).to(torch.float64)
    shift = torch.where((x == 0).any(1), torch.zeros_like(x[:, 0]), x.mean(1) - q.mean(1))
    if x.shape[1] > 1:
        sx, sq = x.std(1), q.std(1)
        gain = torch.where(sq > 0, sx / sq.clamp(min=1e-300), torch.ones_like(sq))
    else:
        gain = torch.ones_like(shift)
    shift, gain = shift.to(w.dtype), gain.to(w.dtype)
    return (shift.reshape(()), gain.reshape(())) if dim is None else (shift, gain)


def apply_bias_correction(wq: Tensor, shift: Tensor, gain: Tensor, dim: int | None = 0) -> Tensor:
    """``(wq + shift) * gain`` with per-channel terms broadcast along ``dim``."""
    return (wq + per_channel(shift, wq, dim)) * per_channel(gain, wq, dim)

"""Per-layer pruning-error allowance from computational load (US 2019/0050735 A1, step 2) and layer kinds.

The rule is a reconstruction [R] (the patent's formula was not available):

* ``"mac_share"``: factor_l = L * MAC_l / sum_k MAC_k — a layer's share of the compute, mean 1 over layers.
* ``"macs_per_weight"``: factor_l = (MAC_l/N_l) / mean_k (MAC_k/N_k) — MACs saved per pruned weight.

Then factor_l <- clip(factor_l ** power, lo, hi) and eps_l = eps0 * factor_l. Layers that cost more may be pruned
harder, which is the patent's aim (reduce computation).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError

ALLOWANCE_RULES = ("mac_share", "macs_per_weight")
LAYER_KINDS = ("conv", "depthwise", "grouped", "linear", "rnn", "attention")


def allowance_factors(macs: Sequence[float] | Tensor, n_weights: Sequence[float] | Tensor,
                      rule: str = "mac_share", power: float = 1.0,
                      clip: tuple[float, float] | None = None) -> Tensor:
    """Relative allowance per layer (eps_l / eps0), float64 shaped (L,)."""
    m = torch.as_tensor(macs, dtype=torch.float64)
    n = torch.as_tensor(n_weights, dtype=torch.float64)
    if m.ndim != 1 or m.shape != n.shape or m.numel() == 0:
        raise ConfigError(f"macs and n_weights must be equal-length 1-D, got {tuple(m.shape)} and {tuple(n.shape)}")
    if (m < 0).any() or (n <= 0).any():
        raise ConfigError("MAC counts must be >= 0 and weight counts > 0")
    if rule == "mac_share":
        total = m.sum()
        f = m * m.numel() / total if total > 0 else torch.ones_like(m)
    elif rule == "macs_per_weight":
        inten = m / n
        f = inten / inten.mean() if inten.mean() > 0 else torch.ones_like(m)
    else:
        raise ConfigError(f"allowance rule must be one of {ALLOWANCE_RULES}, got {rule!r}")
    f = f ** power
    if clip is not None:
        f = f.clamp(clip[0], clip[1])
    return f


def layer_kind(module: nn.Module) -> str:
    """Kind used for the per-kind pruned-fraction bounds: conv, depthwise, grouped, linear, rnn, attention."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if module.groups == 1:
            return "conv"
        return "depthwise" if module.groups == module.in_channels else "grouped"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "rnn"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    raise ConfigError(f"no layer kind for module type {type(module).__name__}")

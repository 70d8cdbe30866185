"""Lloyd-Max quantizer (1-D k-means) per channel, vectorized: the MSE-optimal reference for a level count.

Each channel's values are sorted once; an iteration assigns values to the nearest level (cells between
midpoints, found by ``searchsorted``) and moves each level to the mean of its cell, using prefix sums, so it
costs O(L log K) per channel instead of O(L K). Lloyd iterations never raise the error, so starting them from
the uniform grid and from the PWLQ grid and keeping the better result per channel gives an error no larger
than either grid's nearest-level error (the "bound" cannot sit above PWLQ on heavy-tailed channels).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from .base import check_weight, to_channels
from .uniform import uniform_levels


def _sorted_prefix(x: Tensor):
    s = x.to(torch.float64).sort(1).values
    zero = torch.zeros(s.shape[0], 1, dtype=torch.float64, device=s.device)
    return s, torch.cat([zero, s.cumsum(1)], 1), (s * s).sum(1)


def _cells(s: Tensor, levels: Tensor):
    """Index bounds (C, L+1) of the nearest-level cells of sorted values ``s`` for sorted ``levels``."""
    mid = 0.5 * (levels[:, 1:] + levels[:, :-1])
    idx = torch.searchsorted(s, mid.contiguous())
    C, K = s.shape
    zeros = torch.zeros(C, 1, dtype=idx.dtype, device=s.device)
    return torch.cat([zeros, idx, torch.full_like(zeros, K)], 1)


def _sse(P1: Tensor, S2: Tensor, bounds: Tensor, levels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    S1 = P1.gather(1, bounds[:, 1:]) - P1.gather(1, bounds[:, :-1])
    cnt = (bounds[:, 1:] - bounds[:, :-1]).to(torch.float64)
    sse = S2 - 2 * (levels * S1).sum(1) + (levels * levels * cnt).sum(1)
    return sse.clamp(min=0), S1, cnt


def lloyd_max(x: Tensor, init: Tensor, max_iter: int = 100, rtol: float = 1e-9) -> tuple[Tensor, Tensor]:
    """Run Lloyd iterations on each row of ``x`` (C, K) from ``init`` (C, L) levels.

    Returns (levels (C, L) sorted, sum of squared errors (C,) float64). Levels of empty cells stay put.
    """
    if x.dim() != 2 or init.dim() != 2 or init.shape[0] != x.shape[0]:
        raise ShapeError(f"lloyd_max expects x (C, K) and init (C, L), got {tuple(x.shape)}, {tuple(init.shape)}")
    s, P1, S2 = _sorted_prefix(x)
    lev = init.to(torch.float64).sort(1).values
    prev = None
    for _ in range(max_iter):
        bounds = _cells(s, lev)
        sse, S1, cnt = _sse(P1, S2, bounds, lev)
        if prev is not None and bool(((prev - sse) <= rtol * prev.clamp(min=1e-300)).all()):
            break
        prev = sse
        lev = torch.where(cnt > 0, S1 / cnt.clamp(min=1), lev).sort(1).values
    bounds = _cells(s, lev)
    return lev, _sse(P1, S2, bounds, lev)[0]


def nearest_level_sse(x: Tensor, levels: Tensor) -> Tensor:
    """Sum of squared errors (C,) of mapping each row of ``x`` to its nearest level in ``levels`` (C, L)."""
    s, P1, S2 = _sorted_prefix(x)
    lev = levels.to(torch.float64).sort(1).values
    return _sse(P1, S2, _cells(s, lev), lev)[0]


def lloyd_max_mse(w: Tensor, n_levels: int, *, dim: int | None = 0, inits: list[Tensor] | tuple = (),
                  max_iter: int = 100, name: str = "tensor") -> tuple[float, Tensor]:
    """Per-channel Lloyd-Max with ``n_levels`` levels: (MSE over all weights, levels (C, L)).

    Runs from the uniform grid on [-max|w|, max|w|] and from each extra grid in ``inits`` (e.g. the PWLQ
    levels, each (C, n_levels)); keeps the lowest error per channel.
    """
    check_weight(w, name)
    x = to_channels(w.detach(), dim)
    starts = [uniform_levels(w, n_levels, dim)] + [g.to(x.device) for g in inits]
    best_lev, best_sse = None, None
    for g in starts:  # a handful of initial grids, not a loop over channels
        if g.shape != (x.shape[0], n_levels):
            raise ShapeError(f"{name}: Lloyd-Max init grid has shape {tuple(g.shape)}, expected "
                             f"({x.shape[0]}, {n_levels})")
        lev, sse = lloyd_max(x, g, max_iter=max_iter)
        if best_sse is None:
            best_lev, best_sse = lev, sse
        else:
            better = sse < best_sse
            best_sse = torch.where(better, sse, best_sse)
            best_lev = torch.where(better[:, None], lev, best_lev)
    return float(best_sse.sum() / w.numel()), best_lev

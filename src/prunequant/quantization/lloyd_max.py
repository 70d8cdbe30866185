"""Lloyd-Max quantizer (1-D k-means) per channel, vectorized: the MSE-optimal reference for a level count.

Each channel's values are sorted once; an iteration assigns values to the nearest level (cells between
midpoints, found by ``searchsorted``) and moves each level to the mean of its cell, using prefix sums, so it
costs O(L log K) per channel instead of O(L K). Lloyd iterations only find a local optimum, so the reference is
started from several grids - the uniform grid, the per-channel quantiles (k-means' usual start) and any grids the
caller adds (e.g. the PWLQ levels) - and the best result per channel is kept; it is never above any start grid's
nearest-level error, so the "bound" cannot sit above PWLQ.

Two references per quantizer (see :func:`lloyd_max_references`): the same number of levels (the quantizer's own
level count, e.g. 31 for 4-bit PWLQ) and the same bits of storage per weight code (2^(code bits), e.g. 32 for
4-bit PWLQ with its region bit).
"""
from __future__ import annotations

import math

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


def lloyd_max(x: Tensor, init: Tensor, max_iter: int = 100, rtol: float = 1e-9,
              prefix=None) -> tuple[Tensor, Tensor]:
    """Run Lloyd iterations on each row of ``x`` (C, K) from ``init`` (C, L) levels.

    Returns (levels (C, L) sorted, sum of squared errors (C,) float64). Levels of empty cells stay put.
    ``prefix``: the sorted values and prefix sums of ``x`` from an earlier call (reused across start grids).
    """
    if x.dim() != 2 or init.dim() != 2 or init.shape[0] != x.shape[0]:
        raise ShapeError(f"lloyd_max expects x (C, K) and init (C, L), got {tuple(x.shape)}, {tuple(init.shape)}")
    s, P1, S2 = prefix if prefix is not None else _sorted_prefix(x)
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


def quantile_levels(x: Tensor, n_levels: int) -> Tensor:
    """Per-row quantiles at (i + 1/2) / L of ``x`` (C, K): (C, L), the usual k-means start."""
    q = (torch.arange(n_levels, dtype=torch.float64, device=x.device) + 0.5) / n_levels
    s = x.to(torch.float64).sort(1).values
    idx = (q * (s.shape[1] - 1)).round().long().clamp(0, s.shape[1] - 1)
    return s[:, idx]


def lloyd_max_mse(w: Tensor, n_levels: int, *, dim: int | None = 0, inits: list[Tensor] | tuple = (),
                  max_iter: int = 100, name: str = "tensor") -> tuple[float, Tensor]:
    """Per-channel Lloyd-Max with ``n_levels`` levels: (MSE over all weights, levels (C, L)).

    Runs from the uniform grid on [-max|w|, max|w|], from the per-channel quantiles, and from each extra grid in
    ``inits`` (e.g. the PWLQ levels, each (C, n_levels); grids of another size are skipped); keeps the lowest
    error per channel.

    Example:
        >>> mse, levels = lloyd_max_mse(torch.randn(4, 256), 16)
        >>> levels.shape
        torch.Size([4, 16])
    """
    check_weight(w, name)
    x = to_channels(w.detach(), dim)
    starts = [uniform_levels(w, n_levels, dim), quantile_levels(x, n_levels)] + [g.to(x.device) for g in inits]
    best_lev, best_sse = None, None
    prefix = _sorted_prefix(x)
    for g in starts:  # a handful of initial grids, not a loop over channels
        if g.dim() != 2 or g.shape[0] != x.shape[0]:
            raise ShapeError(f"{name}: Lloyd-Max init grid has shape {tuple(g.shape)}, expected "
                             f"({x.shape[0]}, {n_levels})")
        if g.shape[1] != n_levels:
            continue
        lev, sse = lloyd_max(x, g, max_iter=max_iter, prefix=prefix)
        if best_sse is None:
            best_lev, best_sse = lev, sse
        else:
            better = sse < best_sse
            best_sse = torch.where(better, sse, best_sse)
            best_lev = torch.where(better[:, None], lev, best_lev)
    return float(best_sse.sum() / w.numel()), best_lev


def lloyd_max_references(w: Tensor, n_levels: int, code_bits: float, *, dim: int | None = 0,
                         inits: list[Tensor] | tuple = (), name: str = "tensor") -> dict[str, float]:
    """Lloyd-Max MSE at the same number of levels and at the same storage bits per weight code.

    Args:
        w: weight; n_levels: the quantizer's level count per channel (e.g. 31 for 4-bit b-center PWLQ).
        code_bits: bits stored per weight for its code (b + region bits for PWLQ, b for uniform); the
            equal-storage reference has ``2**ceil(code_bits)`` levels.
        inits: extra start grids (e.g. the quantizer's own levels), used where their size matches.

    Returns:
        ``{"same_levels": mse, "same_storage": mse, "levels_equal_storage": L}``.
    """
    same_lv, lev = lloyd_max_mse(w, n_levels, dim=dim, inits=inits, name=name)
    L = int(2 ** math.ceil(code_bits))
    grids = list(inits)
    while lev.shape[1] < L:  # also start from the same-levels optimum plus levels in its widest gaps
        gaps = lev[:, 1:] - lev[:, :-1]
        j = gaps.argmax(1, keepdim=True)
        lev = torch.cat([lev, lev.gather(1, j) + 0.5 * gaps.gather(1, j)], 1).sort(1).values
    if lev.shape[1] == L:
        grids.append(lev)
    same_st = same_lv if L == n_levels else lloyd_max_mse(w, L, dim=dim, inits=grids, name=name)[0]
    return {"same_levels": same_lv, "same_storage": same_st, "levels_equal_storage": L}

"""Piecewise linear quantization (PWLQ): the functional math, vectorized over channels.

Split out of :mod:`prunequant.quantization.pwlq` (which keeps the quantizer class) so that the breakpoint
search (:mod:`.breakpoints`) and the quantizer both build on it without an import circle.

The range [-m, m] (m = max|w| per channel) is cut at breakpoints 0 < p_1 < ... < p_n < m into a center
region |w| < p_1 and outer regions p_l <= |w| < p_(l+1) (the last one closed at m). Each piece is quantized
uniformly on |w|, sign kept, with K = 2^(b-1) - 1 steps:

* ``variant="paper"`` (eq. 3): every region, center included, is ``lo + k (hi - lo) / K``, k = 0..K, i.e.
  (b-1) bits of magnitude plus the sign. Eq. 4 gives its expected error exactly.
* ``variant="b_center"`` (default; the reference code's "pw-2"): the center is a b-bit symmetric grid with step
  ``2 p_1 / (2^b - 1)`` (levels up to just below p_1), the outer pieces are as above.

Storage: each weight becomes a b-bit signed code ``c`` (``k`` if w >= 0, else ``-k-1``) plus a region id
(0..n). :func:`pwlq_dequantize` rebuilds the exact float values from codes, breakpoints and m.
Breakpoints are (C, n), m is (C,).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, LayerError, ShapeError
from .base import check_bits, from_channels, per_channel, ste, to_channels

__all__ = ["VARIANTS", "MAX_BREAKPOINTS", "check_variant", "pwlq_level_count", "as_breakpoints", "bounds",
           "region_steps", "magnitude_quant", "pwlq_quantize", "pwlq_codes", "pwlq_dequantize", "magnitude_cells",
           "pwlq_levels", "region_bits"]

VARIANTS = ("b_center", "paper")
MAX_BREAKPOINTS = 3


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"PWLQ variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def pwlq_level_count(bits: int, n_breakpoints: int = 1, variant: str = "b_center") -> int:
    """Number of distinct representable values per channel (both signs).

    paper: 2^b - 1 center levels + 2n(2^(b-1) - 1) outer ones (n = 1: 2^(b+1) - 3).
    b_center: 2^b - 1 center levels + 2(2^(b-1) + (n-1)(2^(b-1) - 1)) (n = 1: 2^(b+1) - 1).
    """
    check_bits(bits)
    check_variant(variant)
    K = 2 ** (bits - 1) - 1
    if variant == "paper":
        return 2 ** bits - 1 + 2 * n_breakpoints * K
    return 2 ** bits - 1 + 2 * ((K + 1) + (n_breakpoints - 1) * K)


def as_breakpoints(breakpoints, C: int, device, dtype) -> Tensor:
    p = torch.as_tensor(breakpoints, device=device, dtype=dtype)
    if p.dim() == 0:
        p = p.reshape(1, 1)
    elif p.dim() == 1:
        p = p.reshape(C, 1) if C > 1 or p.numel() == 1 else p.reshape(1, -1)
    if p.dim() != 2 or p.shape[0] != C or not 1 <= p.shape[1] <= MAX_BREAKPOINTS:
        raise ShapeError(f"breakpoints must have shape (C={C}, n) with 1 <= n <= {MAX_BREAKPOINTS}, "
                         f"got {tuple(torch.as_tensor(breakpoints).shape)}")
    return p


def bounds(breakpoints: Tensor, max_abs: Tensor, name: str = "tensor") -> Tensor:
    """Region bounds (C, n+2) = [0, p_1, ..., p_n, m]; checks 0 < p_1 < ... < p_n < m (all 0 if m = 0)."""
    m = max_abs.reshape(-1, 1).to(breakpoints.dtype)
    P = torch.cat([torch.zeros_like(m), breakpoints, m], 1)
    gaps = P[:, 1:] - P[:, :-1]
    ok = (gaps > 0).all(1) | ((m[:, 0] == 0) & (breakpoints == 0).all(1))
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise LayerError(f"{name}: breakpoints of channel {bad} must satisfy 0 < p_1 < ... < p_n < m "
                         f"(m = {float(m[bad, 0]):.6g}), got {P[bad, 1:-1].tolist()}")
    return P


def region_steps(P: Tensor, bits: int, variant: str) -> Tensor:
    """Quantization step of each region, (..., n+1), from bounds P (..., n+2)."""
    K = 2 ** (bits - 1) - 1
    step = (P[..., 1:] - P[..., :-1]) / K
    if variant == "b_center":
        step = torch.cat([2 * P[..., 1:2] / (2 ** bits - 1), step[..., 1:]], -1)
    return step


def magnitude_quant(a: Tensor, P: Tensor, bits: int, variant: str):
    """Quantize magnitudes ``a`` (..., K) with bounds ``P`` (..., n+2): returns (value, k, region)."""
    K = 2 ** (bits - 1) - 1
    n = P.shape[-1] - 2
    region = (a >= P[..., 1:2]).long()
    for l in range(2, n + 1):  # n <= 3 breakpoints, not a loop over weights or channels
        region = region + (a >= P[..., l:l + 1]).long()
    steps = region_steps(P, bits, variant)
    lo = P.gather(-1, region)
    step = steps.gather(-1, region)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    k = torch.round((a - lo) / safe).clamp(0, K)
    return _level(P, region, k, step, lo, bits, variant), k, region


def _level(P: Tensor, region: Tensor, k: Tensor, step: Tensor, lo: Tensor, bits: int, variant: str) -> Tensor:
    """lo + k*step, but exactly hi at the top of a region whose grid ends on its upper bound, so that the
    shared endpoint p_l is one float value (level counts stay exact)."""
    K = 2 ** (bits - 1) - 1
    top = k == K
    if variant == "b_center":
        top = top & (region > 0)
    return torch.where(top, P.gather(-1, region + 1), lo + k * step)


def _prepare(w: Tensor, bits: int, breakpoints, max_abs, variant: str, dim: int | None, name: str):
    check_bits(bits)
    check_variant(variant)
    x = to_channels(w, dim)
    if max_abs is None:
        max_abs = x.detach().abs().amax(1)
    m = torch.as_tensor(max_abs, device=w.device, dtype=w.dtype).reshape(-1)
    if m.numel() != x.shape[0]:
        raise ShapeError(f"{name}: max_abs has {m.numel()} entries for {x.shape[0]} channels")
    P = bounds(as_breakpoints(breakpoints, x.shape[0], w.device, w.dtype), m, name)
    return x, P


def pwlq_quantize(w: Tensor, bits: int, breakpoints, max_abs=None, *, variant: str = "b_center",
                  dim: int | None = 0, name: str = "tensor") -> Tensor:
    """Fake-quantize ``w`` with PWLQ (same shape). ``breakpoints``: (C, n) absolute values (or (C,) for
    n = 1; (n,) with ``dim=None``); ``max_abs``: (C,) range, default ``max|w|`` per channel.
    Values beyond m are clamped to +-m. Straight-through gradient for |w| <= m, zero beyond."""
    x, P = _prepare(w, bits, breakpoints, max_abs, variant, dim, name)
    val, _, _ = magnitude_quant(x.detach().abs(), P, bits, variant)
    q = from_channels(torch.sign(x.detach()) * val, w, dim)
    m = per_channel(P[:, -1], w, dim)
    return ste(w, q, -m, m)


def pwlq_codes(w: Tensor, bits: int, breakpoints, max_abs=None, *, variant: str = "b_center",
               dim: int | None = 0, name: str = "tensor") -> dict[str, Tensor]:
    """``{"codes": int32 b-bit signed codes, "region": uint8 region ids}``, both shaped like ``w``."""
    x, P = _prepare(w.detach(), bits, breakpoints, max_abs, variant, dim, name)
    _, k, region = magnitude_quant(x.abs(), P, bits, variant)
    k = k.to(torch.int32)
    c = torch.where(x < 0, -k - 1, k)
    return {"codes": from_channels(c, w, dim), "region": from_channels(region.to(torch.uint8), w, dim)}


def pwlq_dequantize(codes: Tensor, region: Tensor, bits: int, breakpoints, max_abs, *,
                    variant: str = "b_center", dim: int | None = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float weights from :func:`pwlq_codes` output (exactly the values :func:`pwlq_quantize` returns)."""
    check_bits(bits)
    check_variant(variant)
    c = to_channels(codes, dim).long()
    r = to_channels(region, dim).long()
    m = torch.as_tensor(max_abs, device=codes.device, dtype=dtype).reshape(-1)
    P = bounds(as_breakpoints(breakpoints, c.shape[0], codes.device, dtype), m)
    neg = c < 0
    k = torch.where(neg, -c - 1, c).to(dtype)
    lo = P.gather(-1, r)
    val = _level(P, r, k, region_steps(P, bits, variant).gather(-1, r), lo, bits, variant)
    out = torch.where(neg, -val, val)
    return from_channels(out, codes.to(dtype), dim)


def magnitude_cells(P: Tensor, bits: int, variant: str) -> tuple[Tensor, Tensor]:
    """Decision cells of the quantizer on |w|: (starts, levels), each (..., E) with E = (n+1) 2^(b-1).

    Cell j holds magnitudes in [starts_j, starts_(j+1)) (the last is unbounded) and maps them to levels_j.
    Used for exact error evaluation from sorted weights and for listing the levels.
    """
    K = 2 ** (bits - 1) - 1
    steps = region_steps(P, bits, variant)[..., None]
    lo = P[..., :-1, None]
    k = torch.arange(K + 1, device=P.device, dtype=P.dtype)
    levels = lo + k * steps
    exact_top = P[..., 1:, None].expand_as(levels)[..., K:]
    if variant == "b_center":
        levels = torch.cat([levels[..., :1, :], torch.cat([levels[..., 1:, :K], exact_top[..., 1:, :]], -1)], -2)
    else:
        levels = torch.cat([levels[..., :K], exact_top], -1)
    starts = lo + (k - 0.5).clamp(min=0) * steps
    return starts.flatten(-2), levels.flatten(-2)


def pwlq_levels(bits: int, breakpoints: Tensor, max_abs: Tensor, variant: str = "b_center") -> Tensor:
    """Sorted representable values per channel, (C, L) with L = :func:`pwlq_level_count` (duplicates where a
    channel is degenerate, e.g. all zero)."""
    check_bits(bits)
    check_variant(variant)
    m = torch.as_tensor(max_abs).reshape(-1)
    P = bounds(as_breakpoints(breakpoints, m.numel(), m.device, m.dtype), m)
    n = P.shape[1] - 2
    _, lev = magnitude_cells(P, bits, variant)
    K1 = 2 ** (bits - 1)
    keep = torch.ones(lev.shape[1], dtype=torch.bool, device=lev.device)
    # drop the first level of each region that repeats the previous region's last one (p_l)
    keep[K1 * torch.arange(2 if variant == "b_center" else 1, n + 1)] = False
    pos = lev[:, keep]
    full = torch.cat([-pos[:, 1:].flip(1), pos], 1)  # level 0 once
    assert full.shape[1] == pwlq_level_count(bits, n, variant)
    return full.sort(1).values


def region_bits(n_breakpoints: int) -> int:
    """Bits needed per weight for the region id (n + 1 regions): ceil(log2(n + 1))."""
    return max(1, (int(n_breakpoints)).bit_length())

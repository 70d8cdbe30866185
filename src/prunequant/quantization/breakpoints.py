"""Breakpoint search for PWLQ, vectorized over channels (CPU or CUDA; no Python loop over channels).

Methods (``find_breakpoints(..., method=...)``):

* ``"gaussian_closed"`` / ``"laplace_closed"`` - one-shot fits of the optimum (1 breakpoint only), in units
  of the channel's std: p~ = ln(0.8614 m~ + 0.6079) (Gaussian), p~ = 0.8030 sqrt(m~) - 0.3167 (Laplacian),
  with m~ = max|w| / std(w). Fitted on m~ in [3, 10]; the paper's published numbers use the Gaussian one.
* ``"gaussian_bisect"`` / ``"laplace_bisect"`` - bisection on the derivative of the expected error (eq. 6,
  and its multi-breakpoint form, solved coordinate-wise) under a unit-variance Gaussian / Laplacian prior.
* ``"empirical"`` - coarse-to-fine grid search that minimises the actual quantization error of the channel
  (no distribution assumption). Errors are computed exactly from sorted weights and prefix sums, so one
  candidate costs O(levels * log K) instead of O(K).

Breakpoints are returned as absolute values, shape (C, n). With one breakpoint the empirical search scans p/m
over ``ratio_range`` (default [0.001, 0.95]: trained layers put the optimum above m/2 on many channels, so the
paper's p < m/2 would cut it off); the prior-based methods keep the paper's (0, m/2) (ratio <= 0.499). With
several breakpoints, 0 < p_1 < ... < p_n < m. Degenerate channels (max 0, std 0 or a
single weight) get evenly spaced breakpoints (p_l = l m / (n + 1)); every weight of
such a channel is reproduced exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .base import check_bits, check_weight, to_channels
from .pwlq_ops import MAX_BREAKPOINTS, check_variant, magnitude_cells, magnitude_quant

METHODS = ("empirical", "gaussian_closed", "laplace_closed", "gaussian_bisect", "laplace_bisect")
PRIORS = ("gaussian", "laplace")
RATIO_MIN, RATIO_MAX = 1e-3, 0.499          # prior-based methods: the paper's admissible (0, m/2)
SEARCH_RANGE = (1e-3, 0.95)                 # empirical search, 1 breakpoint: default bounds of p/m
CAPPED_RANGE = (1e-3, 0.499)                # the range searched before issue 15 (kept for comparisons)
GAUSS_FIT = (0.86143114, 0.607901097496529)      # p~ = ln(a m~ + b), supplement S1.1
LAPLACE_FIT = (0.80304483, -0.3166785508381478)  # p~ = a sqrt(m~) + b
STD_EPS = 1e-12
# Empirical search, 1 breakpoint, over p/m in ``ratio_range`` (default 0.001..0.95: the reference code scans
# 0.1..0.9, and trained layers put the optimum above 0.5 on 11-32% of their channels). Stage 1: a grid of step
# 0.025 over the range. The empirical error of a channel has several local minima, so stage 2 refines around the
# SEARCH_BASINS best stage-1 points (not only the best) at 0.005, stages 3-4 the best at 0.0005 and 0.0001. About
# 116 candidate evaluations per channel (the old capped search: 91); errors are exact (sorted prefix sums). Four
# basins, not two: on the fully trained Fashion-MNIST MobileNet-v2 layers of fan-in 69-400 the worst channel's
# excess over a dense grid drops from 13% to 3.3% (channels > 0.1% above it: 11% -> 10%) for +22% search time.
SEARCH_STAGE1_STEP = 0.025
SEARCH_BASINS = 4
SEARCH_REFINE = ((0.025, 0.005), (0.005, 0.0005), (0.0005, 0.0001))
# search="auto": small channels (fan-in x (2^b - 1) <= EXACT_MAX_EVENTS: depthwise and first layers) are solved
# exactly (their error as a function of p is jagged, and enumerating the pieces where it is a quadratic is cheap);
# larger ones use the grid. search="exact" solves every channel exactly (slower: O(G log G), G = fan-in (2^b - 1)).
SEARCHES = ("auto", "exact", "grid")
EXACT_MAX_EVENTS = 1024
EXACT_CHUNK_ELEMENTS = 1 << 20
EXACT_MARGIN = 4e-7
# Several breakpoints: coordinate-wise search of t in (0, 1), p_l = p_(l-1) + t (p_(l+1) - p_(l-1)).
COORD_STAGE1 = tuple(0.1 * i for i in range(1, 10))
COORD_REFINE = ((0.1, 0.01), (0.01, 0.001))
COORD_SWEEPS = 2
CHUNK_ELEMENTS = 1 << 22


def c_bits(bits: int) -> float:
    """C(b) = 1 / (12 (2^b - 1)^2): uniform b-bit expected error per unit range squared (eq. 2)."""
    return 1.0 / (12.0 * (2 ** bits - 1) ** 2)


# ---------------------------------------------------------------------------------------------------------
# priors and the expected error (eq. 4 and its multi-breakpoint form)
# ---------------------------------------------------------------------------------------------------------
def _folded(x: Tensor, prior: str) -> tuple[Tensor, Tensor]:
    """CDF G and pdf g of |r| for a unit-variance symmetric prior (G = 2F - 1, g = 2f)."""
    if prior == "gaussian":
        return torch.erf(x / math.sqrt(2.0)), math.sqrt(2.0 / math.pi) * torch.exp(-0.5 * x * x)
    if prior == "laplace":  # scale 1/sqrt(2): |r| is exponential with rate sqrt(2)
        e = torch.exp(-math.sqrt(2.0) * x)
        return 1.0 - e, math.sqrt(2.0) * e
    raise ConfigError(f"prior must be one of {PRIORS}, got {prior!r}")


def _bounds_norm(p: Tensor, m: Tensor) -> Tensor:
    return torch.cat([torch.zeros_like(m)[..., None], p, m[..., None]], -1)


def _mass(P: Tensor, prior: str, truncated: bool) -> tuple[Tensor, Tensor]:
    """G at the bounds (G(0) = 0, G(m) = 1) and g at the bounds, optionally for the prior truncated at m."""
    G, g = _folded(P, prior)
    if truncated:
        Gm = G[..., -1:]
        G, g = G / Gm, g / Gm
    G = torch.cat([G[..., :-1], torch.ones_like(G[..., -1:])], -1)
    return G, g


def expected_error(p_norm: Tensor, m_norm: Tensor, bits: int, prior: str = "gaussian",
                   truncated: bool = False) -> Tensor:
    """Expected PWLQ error of the paper quantizer (eq. 4 for n = 1), in units of the variance.

    ``E = C(b-1) * sum_l (p_(l+1) - p_l)^2 [G(p_(l+1)) - G(p_l)]`` with p_0 = 0, p_(n+1) = m, G the CDF of
    |r| and all mass beyond the last breakpoint counted in the outer region (the reference convention;
    ``truncated=True`` renormalises the prior to [-m, m]). ``p_norm``: (..., n), ``m_norm``: (...).
    """
    check_bits(bits)
    p = torch.as_tensor(p_norm, dtype=torch.float64)
    p = p[..., None] if p.dim() == 0 else p
    m = torch.as_tensor(m_norm, dtype=torch.float64).expand(p.shape[:-1])
    P = _bounds_norm(p, m)
    G, _ = _mass(P, prior, truncated)
    d = P[..., 1:] - P[..., :-1]
    return c_bits(bits - 1) * (d * d * (G[..., 1:] - G[..., :-1])).sum(-1)


def _grad_coord(P: Tensor, l: int, prior: str, truncated: bool) -> Tensor:
    """dE/dp_l / C(b-1) for bounds P (C, n+2), 1 <= l <= n (eq. 6 for n = 1, up to its factor 2)."""
    G, g = _mass(P, prior, truncated)
    below, above = P[:, l] - P[:, l - 1], P[:, l + 1] - P[:, l]
    return (2 * below * (G[:, l] - G[:, l - 1]) + below * below * g[:, l]
            - 2 * above * (G[:, l + 1] - G[:, l]) - above * above * g[:, l])


def closed_form_breakpoint(m_norm: Tensor, prior: str = "gaussian") -> Tensor:
    """One-breakpoint closed form p~*(m~) in std units (not clamped)."""
    m = torch.as_tensor(m_norm, dtype=torch.float64)
    if prior == "gaussian":
        a, b = GAUSS_FIT
        return torch.log((a * m + b).clamp(min=1e-300))
    if prior == "laplace":
        a, b = LAPLACE_FIT
        return a * torch.sqrt(m) + b
    raise ConfigError(f"prior must be one of {PRIORS}, got {prior!r}")


def bisect_breakpoints(m_norm: Tensor, n_breakpoints: int = 1, prior: str = "gaussian",
                       truncated: bool = False, tol: float = 1e-10, max_sweeps: int = 500) -> Tensor:
    """Minimise the expected error over breakpoints (std units), (C,) -> (C, n).

    n = 1: bisection on eq. (6) over (0, m~/2) (the error is convex there, Lemma 1). n > 1: coordinate-wise
    bisection on dE/dp_l inside (p_(l-1), p_(l+1)), sweeping until no breakpoint moves more than ``tol``.
    """
    m = torch.as_tensor(m_norm, dtype=torch.float64).reshape(-1)
    n = n_breakpoints
    frac = torch.arange(1, n + 1, dtype=torch.float64, device=m.device) / (n + 1)
    P = _bounds_norm(m[:, None] * (frac * (0.5 if n == 1 else 1.0)), m)
    iters = max(1, math.ceil(math.log2(max(float(m.max()), 1.0) / tol)) + 1)
    for _ in range(max_sweeps if n > 1 else 1):
        moved = torch.zeros_like(m)
        for l in range(1, n + 1):
            lo = P[:, l - 1].clone()
            hi = m / 2 if n == 1 else P[:, l + 1].clone()
            old = P[:, l].clone()
            for _ in range(iters):
                P[:, l] = 0.5 * (lo + hi)
                pos = _grad_coord(P, l, prior, truncated) > 0
                hi = torch.where(pos, P[:, l], hi)
                lo = torch.where(pos, lo, P[:, l])
            P[:, l] = 0.5 * (lo + hi)
            moved = torch.maximum(moved, (P[:, l] - old).abs())
        if float(moved.max()) < tol:
            break
    return P[:, 1:-1]


# ---------------------------------------------------------------------------------------------------------
# exact empirical error of candidate breakpoints
# ---------------------------------------------------------------------------------------------------------
def _sort_rows(x: Tensor) -> Tensor:
    """Each row sorted ascending. On CPU numpy's SIMD sort (x86-simd-sort) is ~7x faster than ``Tensor.sort``
    for integer rows; elsewhere torch's."""
    if x.device.type == "cpu" and not x.requires_grad:
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return x.sort(1).values


def _argsort_rows(x: Tensor) -> Tensor:
    """Row-wise sort permutation (int64), numpy's on CPU (~2x faster than ``Tensor.sort`` for float64 rows)."""
    if x.device.type == "cpu" and not x.requires_grad:
        return torch.from_numpy(np.argsort(x.numpy(), axis=1))
    return x.sort(1).indices


class ChannelErrors:
    """Sum of squared PWLQ errors per channel for many candidate breakpoint sets at once.

    ``a``: (C, K) magnitudes. ``sse(P)`` takes bounds P (C, G, n+2) = [0, p_1.., m] and returns (C, G) float64.
    Large channels use sorted magnitudes + prefix sums (cost per candidate O(E log K), E = number of cells);
    small ones evaluate the quantizer directly, in chunks of channels.
    """

    def __init__(self, a: Tensor, bits: int, variant: str):
        self.bits, self.variant = bits, variant
        self.C, self.K = a.shape
        self.a = a
        self._sorted = None

    def _use_sorted(self, n: int) -> bool:
        E = (n + 1) * 2 ** (self.bits - 1)
        return E * (math.log2(self.K + 1) + 8) < 4 * self.K

    def _prefix(self):
        if self._sorted is None:
            # magnitudes are >= 0, so their IEEE bit patterns sort like the values (integer sort is faster)
            if self.a.dtype == torch.float64:
                s = _sort_rows(self.a.contiguous().view(torch.int64)).view(torch.float64)
            else:
                a = self.a.to(torch.float32).contiguous()
                s = _sort_rows(a.view(torch.int32)).view(torch.float32).to(torch.float64)
            zero = torch.zeros(self.C, 1, dtype=torch.float64, device=s.device)
            self._sorted = (s, torch.cat([zero, s.cumsum(1)], 1), (s * s).sum(1))
        return self._sorted

    def sse(self, P: Tensor) -> Tensor:
        if self._use_sorted(P.shape[-1] - 2):
            return self._sse_sorted(P.to(torch.float64))
        return self._sse_direct(P)

    def sse_one(self, p: Tensor, m: Tensor) -> Tensor:
        """SSE (C, G) of one breakpoint ``p`` (C, G) per channel with range ``m`` (C,) = max magnitude.

        Same value as ``sse`` with bounds [0, p, m], in fewer passes: with one breakpoint every level and cell
        start is linear in p, so by summation by parts (cells j, starts t_j, levels L_j, N_j = #{a < t_j},
        F_j = sum{a < t_j})  SSE = sum (a - m)^2 + sum_j (2 F_j dL_j - N_j d(L^2)_j), and within the center and
        the tail the level steps are constant: only sum_k F_k, sum_k N_k and sum_k (2k - 1) N_k per region are
        needed (a few matrix-vector products instead of per-cell temporaries).
        """
        if not self._use_sorted(1):
            P = torch.stack([torch.zeros_like(p), p, m[:, None].expand_as(p)], -1)
            return self._sse_direct(P)
        s, F, S2 = self._prefix()
        p = p.to(torch.float64)
        m = m.to(torch.float64)[:, None]
        C, G = p.shape
        Kq = 2 ** (self.bits - 1) - 1
        c = 2.0 / (2 ** self.bits - 1) if self.variant == "b_center" else 1.0 / Kq
        half = torch.arange(1, Kq + 1, dtype=torch.float64, device=p.device) - 0.5  # k - 1/2, k = 1..Kq
        cp = c * p
        d = (m - p) / Kq
        # cell starts above 0: center (k - 1/2) c p, the tail's p, tail p + (k - 1/2) d   -> (C, G, 2 Kq + 1)
        q = torch.cat([cp[..., None] * half, p[..., None], p[..., None] + d[..., None] * half], -1)
        idx = torch.searchsorted(s, q.reshape(C, -1))
        Fi = F.gather(1, idx).reshape(C, G, -1)
        N = idx.reshape(C, G, -1).to(torch.float64)
        # per region: sum F_k, sum N_k, sum (2k - 1) N_k (center k = 1..Kq; tail k = 1..Kq); the tail start p
        W = torch.zeros(2 * Kq + 1, 5, dtype=torch.float64, device=p.device)
        W[:Kq, 0] = 1.0
        W[:Kq, 1] = 2 * half
        W[Kq + 1:, 2] = 1.0
        W[Kq + 1:, 3] = 1.0
        W[Kq + 1:, 4] = 2 * half
        fs = Fi @ W[:, [0, 2]]        # (C, G, 2): sum F center, sum F tail
        ns = N @ W[:, [1, 3, 4]]      # (C, G, 3): sum (2k-1) N center, sum N tail, sum (2k-1) N tail
        Lc = Kq * cp                  # top center level
        dl0 = p - Lc                  # step from the top center level to the tail's first level p
        Kn = float(self.K)
        base = S2[:, None] - 2 * m * F[:, -1:] + m * m * Kn
        out = (base
               + 2 * cp * fs[..., 0] - cp * cp * ns[..., 0]
               + 2 * dl0 * Fi[..., Kq] - (p * p - Lc * Lc) * N[..., Kq]
               + 2 * d * fs[..., 1] - 2 * p * d * ns[..., 1] - d * d * ns[..., 2])
        return out.clamp(min=0)

    def _sse_sorted(self, P: Tensor) -> Tensor:
        s, P1, S2 = self._prefix()
        C, G, _ = P.shape
        starts, levels = magnitude_cells(P, self.bits, self.variant)  # (C, G, E)
        E = starts.shape[-1]
        idx = torch.searchsorted(s, starts.reshape(C, G * E)).reshape(C, G, E)
        idx_next = torch.cat([idx[..., 1:], torch.full_like(idx[..., :1], self.K)], -1)
        S1 = (P1.gather(1, idx_next.reshape(C, -1)) - P1.gather(1, idx.reshape(C, -1))).reshape(C, G, E)
        cnt = (idx_next - idx).to(torch.float64)
        sse = S2[:, None] - 2 * (levels * S1).sum(-1) + (levels * levels * cnt).sum(-1)
        return sse.clamp(min=0)

    def _sse_direct(self, P: Tensor) -> Tensor:
        G = P.shape[1]
        step = max(1, CHUNK_ELEMENTS // max(1, G * self.K))
        out = []
        for c0 in range(0, self.C, step):  # chunks of channels bound the memory; not per channel
            a = self.a[c0:c0 + step, None, :]
            val, _, _ = magnitude_quant(a, P[c0:c0 + step].to(a.dtype), self.bits, self.variant)
            out.append(((a - val).to(torch.float64) ** 2).sum(-1))
        return torch.cat(out, 0)


def _argmin_pick(values: Tensor, sse: Tensor) -> tuple[Tensor, Tensor]:
    j = sse.argmin(1, keepdim=True)
    return values.gather(1, j)[:, 0], sse.gather(1, j)[:, 0]


def check_ratio_range(ratio_range) -> tuple[float, float]:
    """Validate bounds (lo, hi) of the breakpoint ratio p/m: 0 < lo < hi < 1."""
    try:
        lo, hi = (float(v) for v in ratio_range)
    except (TypeError, ValueError):
        raise ConfigError(f"breakpoint ratio range must be a pair (lo, hi), got {ratio_range!r}") from None
    if not 0.0 < lo < hi < 1.0:
        raise ConfigError(f"breakpoint ratio range must satisfy 0 < lo < hi < 1, got ({lo}, {hi})")
    return lo, hi


def _grid_search_one(err: ChannelErrors, m: Tensor, ratio_range=SEARCH_RANGE) -> Tensor:
    """Coarse-to-fine search of the ratio p/m in ``ratio_range`` for one breakpoint, all channels at once -> (C,).

    Stage 1 scans the range at SEARCH_STAGE1_STEP; the first refinement runs around the SEARCH_BASINS best
    stage-1 points at once (so a second basin is not lost to a coarse-grid tie); later ones around the best.
    """
    lo, hi = check_ratio_range(ratio_range)
    C = m.shape[0]
    dev, dt = m.device, torch.float64

    def evaluate(r: Tensor) -> Tensor:
        return err.sse_one(r * m[:, None], m)

    n1 = max(2, int(math.floor((hi - lo) / SEARCH_STAGE1_STEP + 1e-9)) + 1)
    r = torch.linspace(lo, lo + (n1 - 1) * SEARCH_STAGE1_STEP, n1, device=dev, dtype=dt)
    r = torch.cat([r[r < hi], torch.tensor([hi], device=dev, dtype=dt)]).expand(C, -1)
    sse = evaluate(r)
    k = min(SEARCH_BASINS, r.shape[1])
    seeds = r.gather(1, sse.topk(k, 1, largest=False).indices)  # (C, k)
    best = None
    for i, (half, step) in enumerate(SEARCH_REFINE):
        off = torch.arange(-half, half + step / 2, step, device=dev, dtype=dt)
        centers = seeds if i == 0 else best[:, None]
        cand = (centers[:, :, None] + off).reshape(C, -1).clamp(lo, hi)
        if best is not None:
            cand = torch.cat([best[:, None], cand], 1)
        best, _ = _argmin_pick(cand, evaluate(cand))
    return best


def _exact_search_one(a: Tensor, m: Tensor, bits: int, variant: str, lo: float, hi: float) -> Tensor:
    """Exact minimiser of the empirical SSE over p in [lo m, hi m] (one breakpoint), all channels at once.

    With one breakpoint every level is linear in p (center ``k c p``, c = 2/(2^b - 1) or 1/K; tail
    ``p + k (m - p)/K``), so the SSE is an exact quadratic ``S - 2 B p + A p^2`` on each piece between two
    consecutive *events*, the p where one magnitude changes cell: p = a (tail code 0 -> center code K), a center
    rounding boundary a = (k + 1/2) c p, or a tail one a - p = (k + 1/2)(m - p)/K. Each event changes one
    weight's (alpha, beta), i.e. A, B, S by a known delta; sorting the events and taking cumulative sums gives
    every piece's quadratic, minimised in closed form. Cost O(G log G), G = K_w (2^b - 1) events per channel.
    Returns ratios p/m, (C,) float64.
    """
    K = 2 ** (bits - 1) - 1
    c = 2.0 / (2 ** bits - 1) if variant == "b_center" else 1.0 / K
    a = a.to(torch.float64)
    m = m.to(torch.float64)
    C, Kw = a.shape
    dev, f64 = a.device, torch.float64
    k = torch.arange(K, dtype=f64, device=dev)
    one, zero = torch.ones(1, dtype=f64, device=dev), torch.zeros(1, dtype=f64, device=dev)
    # 2K + 1 event families (f): the switch p = a (tail code 0 -> center code K), center code k+1 -> k at
    # a = (k + 1/2) c p, tail code k+1 -> k at a - p = (k + 1/2)(m - p)/K. Event position: a Pf + m Qf. Each
    # event changes one weight's alpha^2, alpha r and r^2 by deltas linear in (a, m):
    # dA = alpha_f, dB = beta_f a + gamma_f m, dS = (delta_f a + eps_f m) m.
    Pf = torch.cat([one, 1.0 / ((k + 0.5) * c), K / (K - k - 0.5)])
    Qf = torch.cat([zero, torch.zeros_like(k), -(k + 0.5) / (K - k - 0.5)])
    alpha = torch.cat([one * ((K * c) ** 2 - 1.0), (k * c) ** 2 - ((k + 1) * c) ** 2,
                       (1 - k / K) ** 2 - (1 - (k + 1) / K) ** 2])
    beta = torch.cat([one * (K * c - 1.0), torch.full_like(k, -c), torch.full_like(k, 1.0 / K)])
    gamma = torch.cat([zero, torch.zeros_like(k), (1 - (2 * k + 1) / K) / K])
    delta = torch.cat([zero, torch.zeros_like(k), torch.full_like(k, 2.0 / K)])
    eps = torch.cat([zero, torch.zeros_like(k), -(2 * k + 1) / K ** 2])
    F = 2 * K + 1
    step = max(1, EXACT_CHUNK_ELEMENTS // max(1, Kw * F))
    out = []
    for c0 in range(0, C, step):  # chunks of channels bound the memory; not per channel
        x, mc = a[c0:c0 + step], m[c0:c0 + step]
        cc = x.shape[0]
        mv = mc[:, None]
        lo_v, hi_v = lo * mv, hi * mv
        # state at p = lo m
        p0 = lo_v
        tail = x >= p0
        kc = torch.round(x / (c * p0).clamp(min=1e-300)).clamp(0, K)
        kt = torch.round((x - p0) * K / (mv - p0).clamp(min=1e-300)).clamp(0, K)
        al = torch.where(tail, 1.0 - kt / K, kc * c)
        r = x - torch.where(tail, kt * mv / K, torch.zeros_like(x))
        A0, B0, S0 = (al * al).sum(1, keepdim=True), (al * r).sum(1, keepdim=True), (r * r).sum(1, keepdim=True)
        xe, me = x[:, None, :], mv[:, :, None]                                # events laid out (cc, F, Kw)
        pos = xe * Pf[:, None] + me * Qf[:, None]
        inside = (pos > lo_v[:, :, None]) & (pos < hi_v[:, :, None])  # at/below lo: in the start state
        zero_d = torch.zeros((), dtype=f64, device=dev)
        d = (torch.where(inside, alpha[:, None], zero_d), torch.where(inside, xe * beta[:, None] + me * gamma[:, None],
                                                                     zero_d),
             torch.where(inside, (xe * delta[:, None] + me * eps[:, None]) * me, zero_d))
        pos = pos.reshape(cc, -1)
        order = _argsort_rows(pos)
        ps = pos.gather(1, order)
        A, B, S = (v0 + t.reshape(cc, -1).gather(1, order).cumsum(1) for v0, t in zip((A0, B0, S0), d))
        # piece after each event: [ps_j, ps_(j+1)] (clamped to the range), plus the first piece [lo, ps_0]
        left = ps.clamp(min=lo_v, max=hi_v)
        right = torch.cat([left[:, 1:], hi_v], 1)
        # stay EXACT_MARGIN * m inside each piece, so that the breakpoint stored in float32 keeps the piece's
        # assignment; pieces narrower than that are skipped (their neighbours' closed ends cover them)
        margin = EXACT_MARGIN * mv
        e, p_star = _piece_minima(A, B, S, left, right, margin)
        e0, p0_star = _piece_minima(A0, B0, S0, lo_v, left[:, :1], margin)
        j = e.argmin(1, keepdim=True)
        best_e, best_p = e.gather(1, j), p_star.gather(1, j)
        out.append(torch.where(e0 <= best_e, p0_star, best_p)[:, 0])
    p = torch.cat(out)
    return (p / m.clamp(min=1e-300)).clamp(lo, hi)


def _piece_minima(A: Tensor, B: Tensor, S: Tensor, left: Tensor, right: Tensor, margin: Tensor):
    """Minimum of S - 2 B p + A p^2 over [left + margin, right - margin] per piece -> (error, p); pieces
    narrower than 2 margin get error inf."""
    p = torch.where(A > 1e-300, B / A.clamp(min=1e-300), 0.5 * (left + right))
    p = torch.minimum(torch.maximum(p, left + margin), right - margin)
    e = S - 2 * B * p + A * p * p
    return torch.where(right - left > 2 * margin, e, torch.full_like(e, float("inf"))), p


def dense_grid_breakpoints(w: Tensor, bits: int, ratio_range=SEARCH_RANGE, step: float = 2e-4, *,
                           variant: str = "b_center", dim: int | None = 0) -> tuple[Tensor, Tensor]:
    """Reference for tests and benchmarks: best p/m of a dense grid (one breakpoint) and its SSE, per channel.

    Returns (ratios (C,), sse (C,) float64). Costs ~(hi - lo)/step error evaluations per channel.
    """
    lo, hi = check_ratio_range(ratio_range)
    x = to_channels(w.detach(), dim)
    m = x.abs().amax(1).to(torch.float64)
    err = ChannelErrors(x.abs(), bits, variant)
    grid = torch.arange(lo, hi + step / 2, step, dtype=torch.float64, device=m.device)
    best_r, best_e = None, None
    for chunk in grid.split(256):  # a few big batches of candidates, not a loop over channels
        r = chunk.expand(m.shape[0], -1)
        P = torch.stack([torch.zeros_like(r), r * m[:, None], m[:, None].expand_as(r)], -1)
        cr, ce = _argmin_pick(r, err.sse(P))
        if best_e is None:
            best_r, best_e = cr, ce
        else:
            better = ce < best_e
            best_r, best_e = torch.where(better, cr, best_r), torch.where(better, ce, best_e)
    return best_r, best_e


def _coordinate_search(err: ChannelErrors, P: Tensor) -> Tensor:
    """Refine bounds P (C, n+2) coordinate-wise on the empirical error; never increases it."""
    C, n = P.shape[0], P.shape[1] - 2
    dev, dt = P.device, torch.float64
    for _ in range(COORD_SWEEPS):
        for l in range(1, n + 1):
            lo, hi = P[:, l - 1:l], P[:, l + 1:l + 2]
            width = hi - lo
            cur = (P[:, l:l + 1] - lo) / width.clamp(min=1e-300)

            def evaluate(t: Tensor, l: int = l, lo: Tensor = lo, width: Tensor = width) -> Tensor:
                Q = P[:, None, :].repeat(1, t.shape[1], 1)
                Q[:, :, l] = lo + t * width
                return err.sse(Q)

            t = torch.cat([cur, torch.tensor(COORD_STAGE1, device=dev, dtype=dt).expand(C, -1)], 1)
            best, _ = _argmin_pick(t, evaluate(t))
            for half, step in COORD_REFINE:
                off = torch.arange(-half, half + step / 2, step, device=dev, dtype=dt)
                t = torch.cat([best[:, None], (best[:, None] + off).clamp(1e-4, 1 - 1e-4)], 1)
                best, _ = _argmin_pick(t, evaluate(t))
            P[:, l] = lo[:, 0] + best * width[:, 0]
    return P


# ---------------------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------------------
def channel_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row (m = max|x|, std (unbiased), degenerate mask) of a (C, K) tensor, float64."""
    x = x.to(torch.float64)
    m = x.abs().amax(1)
    std = x.std(1) if x.shape[1] > 1 else torch.zeros_like(m)
    degenerate = (m == 0) | ~(std > 0)
    return m, std, degenerate


def find_breakpoints(w: Tensor, bits: int, method: str = "empirical", n_breakpoints: int = 1, *,
                     variant: str = "b_center", dim: int | None = 0, truncated: bool = False,
                     ratio_range: tuple[float, float] = SEARCH_RANGE, search: str = "auto",
                     name: str = "tensor") -> Tensor:
    """Breakpoints (C, n) for PWLQ of ``w`` per slice along ``dim`` ((1, n) per tensor with ``dim=None``).

    Args:
        w: weight tensor; bits: code bits b; method: one of :data:`METHODS`; n_breakpoints: 1..3.
        variant, truncated: quantizer variant; renormalise the prior to [-m, m] (bisection methods).
        ratio_range: bounds (lo, hi) of p/m for one breakpoint. The empirical search scans all of it (default
            0.001..0.95, wide enough for trained layers); the prior-based methods stay inside the paper's
            (0, m/2) and are clamped to [lo, min(hi, 0.499)].
        search: empirical, one breakpoint: ``"exact"`` (piecewise-quadratic sweep, the true optimum in the range),
            ``"grid"`` (coarse-to-fine grid, several basins) or ``"auto"`` (exact for channels with
            fan-in x (2^b - 1) <= EXACT_MAX_EVENTS, grid above).

    ``bits`` and ``variant`` matter only for ``method="empirical"`` (the prior-based optimum does not depend
    on b).

    Returns:
        absolute breakpoints, (C, n), dtype of ``w``.

    Example:
        >>> p = find_breakpoints(torch.randn(8, 64), 4)
        >>> p.shape
        torch.Size([8, 1])
    """
    lo, hi = check_ratio_range(ratio_range)
    if search not in SEARCHES:
        raise ConfigError(f"breakpoint search must be one of {SEARCHES}, got {search!r}")
    check_bits(bits)
    check_variant(variant)
    check_weight(w, name)
    if method not in METHODS:
        raise ConfigError(f"breakpoint method must be one of {METHODS}, got {method!r}")
    if isinstance(n_breakpoints, bool) or not isinstance(n_breakpoints, int) or \
            not 1 <= n_breakpoints <= MAX_BREAKPOINTS:
        raise ConfigError(f"n_breakpoints must be an integer in [1, {MAX_BREAKPOINTS}], got {n_breakpoints!r}")
    n = n_breakpoints
    if method.endswith("_closed") and n != 1:
        raise ConfigError(f"{method} exists for one breakpoint only; use {method.split('_')[0]}_bisect "
                          f"or empirical for n_breakpoints={n}")
    x = to_channels(w.detach(), dim)
    if method == "empirical" and n == 1:  # no std needed: degenerate = all weights of the channel equal (or 0)
        m = x.abs().amax(1).to(torch.float64)
        degenerate = (m == 0) | (x.amax(1) == x.amin(1))
    else:
        m, std, degenerate = channel_stats(x)
        mt = torch.where(degenerate, torch.full_like(m, 4.0), m / (std + STD_EPS))

    if method.endswith("_closed"):
        ratio = (closed_form_breakpoint(mt, method.split("_")[0]) / mt)[:, None]
    elif method.endswith("_bisect"):
        ratio = bisect_breakpoints(mt, n, method.split("_")[0], truncated) / mt[:, None]
    elif n > 1:  # start of the empirical coordinate search: the Gaussian optimum, to 1e-6 (the search refines it)
        ratio = bisect_breakpoints(mt, n, "gaussian", truncated, tol=1e-6, max_sweeps=50) / mt[:, None]
    if method == "empirical":
        err = ChannelErrors(x.abs(), bits, variant)
        if n == 1 and (search == "exact" or (search == "auto"
                                              and x.shape[1] * (2 ** bits - 1) <= EXACT_MAX_EVENTS)):
            ratio = _exact_search_one(x.abs(), m, bits, variant, lo, hi)[:, None]
        elif n == 1:
            ratio = _grid_search_one(err, m, (lo, hi))[:, None]
        else:
            P = _bounds_norm(ratio * m[:, None], m)
            ratio = _coordinate_search(err, P)[:, 1:-1] / m.clamp(min=1e-300)[:, None]

    even = torch.arange(1, n + 1, dtype=torch.float64, device=m.device) / (n + 1)
    ratio = torch.where(degenerate[:, None], even.expand_as(ratio), ratio)
    if n == 1:
        ratio = ratio.clamp(lo, hi if method == "empirical" else max(lo, min(hi, RATIO_MAX)))
    else:  # the searches keep 0 < p_1 < ... < p_n < m; guard the ends
        ratio = ratio.clamp(1e-4, 1 - 1e-4)
    return (ratio * m[:, None]).to(w.dtype)

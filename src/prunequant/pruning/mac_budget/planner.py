"""One pruning round's plan: q-bisection per layer for a base allowance eps0, and the eps0 that meets a MAC target.

Pruning a weight removes its MAC uses from the report's effective MACs (see ``mac_model``), so the planner
predicts the reduction from the current effective MACs minus the uses of the weights it prunes (prefix sums in
sorted-magnitude order); the handler checks the report after applying the plan. The achieved reduction is
monotone non-decreasing in eps0 (larger allowance -> larger q -> more pruned), so eps0 is found by bisection.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError
from .threshold import SortedMagnitudes, bisect_q


@dataclass
class RoundPlan:
    """The masks of one round, as per-layer counts (tensors shaped (L,)) plus the summary numbers."""

    eps0: float
    allowance: Tensor   # eps_l
    q: Tensor           # threshold estimator found by bisection
    threshold: Tensor   # effective magnitude threshold (q * sigma, or the bound's magnitude when clamped)
    pruned: Tensor      # weights newly pruned this round
    error: Tensor       # pruning error per weight of this round's step
    clamp: list[str]    # "", "min" or "max" (pruned-fraction bound applied), or "skip"
    reduction: float    # effective-MAC reduction of the model predicted by the MAC model
    iterations: int


class RoundPlanner:
    """Plans a round for the surviving weights in ``mags``.

    ``factors``: allowance factor per layer (eps_l = eps0 * factor_l); ``k_min`` / ``k_max``: bounds on the number
    newly pruned (from the per-kind pruned-fraction bounds); ``skipped`` layers prune nothing. MAC model:
    ``uses_prefix`` (``mags.sorted_prefix`` of the MACs per weight), ``mac_current`` (effective MACs now) and
    ``mac_dense`` (dense MACs), all as the report counts them.
    """

    def __init__(self, mags: SortedMagnitudes, factors: Tensor, k_min: Tensor, k_max: Tensor,
                 uses_prefix: Tensor, mac_current: float, mac_dense: float, q_min: float = 0.0,
                 q_max: float = 4.0, q_tol: float = 1e-4, max_iter: int = 60, skipped: Tensor | None = None):
        self.mags = mags
        self.factors = factors.to(torch.float64)
        self.k_min, self.k_max = k_min.to(torch.int64), k_max.to(torch.int64)
        self.uses_prefix = uses_prefix.to(torch.float64)
        self.mac_current, self.mac_dense = float(mac_current), float(mac_dense)
        self.q_min, self.q_max, self.q_tol, self.max_iter = q_min, q_max, q_tol, max_iter
        self.skipped = skipped if skipped is not None else torch.zeros_like(self.k_min, dtype=torch.bool)
        if self.mac_dense <= 0:
            raise ConfigError("the model has no MACs to reduce (dense effective MACs = 0)")

    def removed_macs(self, k: Tensor) -> Tensor:
        """MACs removed in each layer by pruning its ``k`` smallest surviving weights."""
        s = self.mags.start
        return self.uses_prefix[s + k] - self.uses_prefix[s]

    def reduction_for(self, k: Tensor) -> float:
        return 1.0 - (self.mac_current - float(self.removed_macs(k).sum())) / self.mac_dense

    @torch.no_grad()
    def at(self, eps0: float) -> RoundPlan:
        """Plan for base allowance ``eps0``: bisect q per layer, then apply the pruned-fraction bounds."""
        allowance = eps0 * self.factors
        res = bisect_q(self.mags, allowance, self.q_min, self.q_max, self.q_tol, self.max_iter)
        k = torch.maximum(torch.minimum(res.pruned, self.k_max), self.k_min.minimum(self.k_max))
        k = torch.where(self.skipped, torch.zeros_like(k), k)
        clamp = ["skip" if s else ("max" if kb > kf else ("min" if kb < kf else ""))
                 for s, kb, kf in zip(self.skipped.tolist(), res.pruned.tolist(), k.tolist())]
        changed = k != res.pruned
        threshold = torch.where(changed, self.mags.magnitude_at_rank(k), res.q * self.mags.sigma)
        threshold = torch.where(self.skipped, torch.zeros_like(threshold), threshold)
        error = self.mags.error_at_count(k)
        return RoundPlan(eps0=float(eps0), allowance=allowance, q=res.q, threshold=threshold, pruned=k,
                         error=error, clamp=clamp, reduction=self.reduction_for(k), iterations=res.iterations)

    def max_reduction(self) -> float:
        return self.at(self.eps_upper()).reduction

    def eps_upper(self) -> float:
        """An eps0 at which every layer's allowance admits q_max (so larger eps0 changes nothing)."""
        e_top, _ = self.mags.error_at_q(torch.full((self.mags.num_layers,), self.q_max, dtype=torch.float64))
        live = self.factors > 0
        if not bool(live.any()):
            return 0.0
        return float((e_top[live] / self.factors[live]).max()) * 1.01 + 1e-30

    @torch.no_grad()
    def search(self, target: float, iters: int = 100) -> RoundPlan:
        """Smallest eps0 whose plan reaches effective-MAC reduction ``target`` (bisection on eps0)."""
        low = self.at(0.0)
        if low.reduction >= target:
            return low
        hi = self.eps_upper()
        top = self.at(hi)
        if top.reduction < target:
            raise ConfigError(
                f"MAC reduction {target:.4f} is unreachable: at most {top.reduction:.4f} with these bounds "
                f"(raise max_pruned or q_max, or include more layers)")
        lo = 0.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if self.at(mid).reduction >= target:
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-12 * hi:
                break
        return self.at(hi)

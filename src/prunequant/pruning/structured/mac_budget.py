"""Channel version of MAC-budget pruning: per-group error allowance from MAC share, threshold q·std of group norms.

For channel group l with normalized group norms n_c = sqrt(s_c) (see :mod:`.costs`):

* allowance  ε_l = ε₀ · L · MAC_l / Σ_k MAC_k   (MAC_l: dense MACs of the layers the group's channels feed and
  come from, i.e. what removing its channels saves), optionally raised to ``power`` and clipped;
* threshold  T_l = q_l · std_c(n_c); channels with n_c < T_l are removed;
* error      e_l(q) = sqrt(mean of n_c² over the removed channels) (the RMS norm of what is removed, independent of
  the group size); q_l is bisected to the largest value with e_l(q_l) ≤ ε_l (at least one channel kept, at most
  ``max_pruned`` of the group removed);
* ε₀ is bisected so that the real MACs of the shrunk model (:class:`~.costs.CostModel`) meet the target, and the
  last channel-level step is closed greedily (weakest n_c per MAC first) so the budget holds within tolerance.

Removing a channel removes its MACs for real: the plan is applied with :func:`~.shrink.remove_channels_`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import LayerError
from .costs import CostModel, StructuredTarget, close_gap, group_scores

__all__ = ["allowances", "channel_threshold", "close_gap", "plan_for_target"]


def allowances(group_macs: list[float], eps0: float, power: float = 1.0,
               clip: tuple[float, float] | None = None) -> list[float]:
    """ε_l = ε₀ · (L · MAC_l / Σ MAC)^power, clipped to ``clip``."""
    tot = sum(group_macs) or 1.0
    n = len(group_macs)
    out = []
    for m in group_macs:
        f = (n * m / tot) ** power
        if clip is not None:
            f = min(max(f, clip[0]), clip[1])
        out.append(eps0 * f)
    return out


def channel_threshold(norms: Tensor, eps: float, max_pruned: float = 0.95, iters: int = 40) -> tuple[float, Tensor]:
    """Largest q with RMS(removed n_c) ≤ eps where removed = n_c < q·std(n); returns (q, keep mask)."""
    n = norms.detach().double()
    std = float(n.std()) if n.numel() > 1 else 0.0
    std = std if std > 0 else float(n.abs().mean()) + 1e-12
    cap = max(0, min(int(math.floor(max_pruned * n.numel())), n.numel() - 1))
    order = torch.sort(n).values

    def err(q: float) -> tuple[float, int]:
        rm = n < q * std
        k = int(rm.sum())
        if k == 0:
            return 0.0, 0
        return float(n[rm].pow(2).mean().sqrt()), k

    lo, hi = 0.0, float(order[-1]) / std + 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        e, k = err(mid)
        if e <= eps and k <= cap:
            lo = mid
        else:
            hi = mid
    keep = n >= lo * std
    if not keep.any():
        keep[int(n.argmax())] = True
    return lo, keep


def _plan_from_keep(graph, keep: list[Tensor]) -> dict[str, list[int]]:
    return {g.name: torch.nonzero(k == 0).flatten().tolist() for g, k in zip(graph.groups, keep) if (k == 0).any()}


@torch.no_grad()
def plan_for_target(costs: CostModel, target: StructuredTarget, *, power: float = 1.0,
                    clip: tuple[float, float] | None = None, max_pruned: float = 0.95,
                    tolerance: float = 0.005) -> tuple[dict[str, list[int]], dict]:
    """The removal plan meeting ``target`` (cost ratio within ``tolerance`` below the goal).

    Returns (plan, info) with info: eps0, per-group q and allowance, and the achieved cost ratio.
    """
    graph = costs.graph
    norms = [group_scores(g)[0].detach().clamp_min(0).sqrt() for g in graph.groups]
    gm = costs.group_macs()
    goal = target.ratio(costs)

    def decide(eps0: float):
        eps = allowances(gm, eps0, power, clip)
        res = [channel_threshold(n, e, max_pruned) for n, e in zip(norms, eps)]
        keep = [k.to(torch.float64) for _, k in res]
        return keep, [q for q, _ in res], eps

    def ratio(keep):
        return float(target.measure(costs, keep))

    lo, hi = 0.0, 1.0
    while ratio(decide(hi)[0]) > goal and hi < 1e6:
        hi *= 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if ratio(decide(mid)[0]) > goal:
            lo = mid
        else:
            hi = mid
    keep, qs, eps = decide(hi)
    keep = close_gap(costs, target, keep, norms, goal, tolerance)
    cur = ratio(keep)
    if cur > goal + tolerance:
        raise LayerError(f"channel target {target} not reachable within tolerance (best {1 - cur:.3f} reduction)")
    info = {"eps0": hi, "q": qs, "allowance": eps, "cost_ratio": cur}
    return _plan_from_keep(graph, keep), info



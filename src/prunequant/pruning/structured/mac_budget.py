"""Channel version of MAC-budget pruning: per-group error allowance from MAC share, threshold q·std of group norms.

For channel group l with normalized group norms n_c = sqrt(s_c) (see :mod:`.costs`):

* allowance  ε_l = ε₀ · (L · MAC_l / Σ_k MAC_k)^power / S_l, clipped (MAC_l: dense MACs of the layers the group's
  channels feed and come from, i.e. what removing its channels saves; ``allowance="macs_per_weight"`` uses
  MAC_l / params_l relative to the mean instead of the share). ``S_l`` is the group's measured output sensitivity
  (:func:`~.calibrate.group_sensitivity`, mean 1; ``sensitivity=None``: 1 for every group);
* threshold  T_l = q_l · std_c(n_c); channels with n_c < T_l are removed;
* error      ``error="energy"`` (default): e_l(q) = sqrt(Σ_removed n_c² / Σ_all n_c²), the relative L2 change of
  the group's weights (the structured analogue of the seed's relative pruning error: 0 when nothing is removed,
  rising smoothly to 1). ``error="rms"``: sqrt(mean of n_c² over the removed channels), the seed's power-mean error
  per pruned unit, kept for comparison: group norms of trained BatchNorm networks sit in a narrow band around their
  mean (normalised n_c ≈ 0.8-1.2), so the RMS of the removed channels jumps from 0 to ≈ 1 and a group is pruned
  either not at all or to ``max_pruned`` (the collapse of the Fashion-MNIST ResNet-style stem group);
* q_l is bisected to the largest value with e_l(q_l) ≤ ε_l (at least one channel kept, at most ``max_pruned`` of
  the group removed);
* ε₀ is bisected so that the real MACs of the shrunk model (:class:`~.costs.CostModel`) meet the target, and the
  last channel-level step is closed greedily (weakest n_c per MAC first) so the budget holds within tolerance.

Removing a channel removes its MACs for real: the plan is applied with :func:`~.shrink.remove_channels_`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError, LayerError
from .costs import CostModel, StructuredTarget, close_gap, group_scores

__all__ = ["CHANNEL_ERRORS", "allowances", "channel_threshold", "close_gap", "plan_for_target"]

CHANNEL_ERRORS = ("energy", "rms")


def allowances(group_macs: list[float], eps0: float, power: float = 1.0,
               clip: tuple[float, float] | None = None, sensitivity: list[float] | None = None,
               group_params: list[float] | None = None, rule: str = "mac_share") -> list[float]:
    """ε_l = ε₀ · clip(f_l^power / S_l) with f_l = L · MAC_l / Σ MAC (``rule="mac_share"``) or
    (MAC_l / params_l) / mean (``"macs_per_weight"``, needs ``group_params``); S_l = ``sensitivity`` (default 1)."""
    n = len(group_macs)
    if rule == "macs_per_weight":
        if group_params is None:
            raise ConfigError("allowance='macs_per_weight' needs the parameter count of every group")
        inten = [m / max(p, 1.0) for m, p in zip(group_macs, group_params)]
        mean = sum(inten) / max(n, 1) or 1.0
        base = [i / mean for i in inten]
    elif rule == "mac_share":
        tot = sum(group_macs) or 1.0
        base = [n * m / tot for m in group_macs]
    else:
        raise ConfigError(f"channel allowance rule must be 'mac_share' or 'macs_per_weight', got {rule!r}")
    sens = sensitivity if sensitivity is not None else [1.0] * n
    out = []
    for f, s in zip(base, sens):
        f = f ** power / max(float(s), 1e-12)
        if clip is not None:
            f = min(max(f, clip[0]), clip[1])
        out.append(eps0 * f)
    return out


def channel_threshold(norms: Tensor, eps: float, max_pruned: float = 0.95, iters: int = 40,
                      error: str = "energy") -> tuple[float, Tensor]:
    """Largest q with e(q) ≤ eps where removed = n_c < q·std(n); returns (q, keep mask).

    ``error="energy"``: e = sqrt(Σ removed n² / Σ n²); ``"rms"``: e = sqrt(mean removed n²).
    """
    if error not in CHANNEL_ERRORS:
        raise ConfigError(f"channel error must be one of {CHANNEL_ERRORS}, got {error!r}")
    n = norms.detach().double()
    total = float(n.pow(2).sum()) or 1.0
    std = float(n.std()) if n.numel() > 1 else 0.0
    std = std if std > 0 else float(n.abs().mean()) + 1e-12
    cap = max(0, min(int(math.floor(max_pruned * n.numel())), n.numel() - 1))
    order = torch.sort(n).values

    def err(q: float) -> tuple[float, int]:
        rm = n < q * std
        k = int(rm.sum())
        if k == 0:
            return 0.0, 0
        if error == "energy":
            return (float(n[rm].pow(2).sum()) / total) ** 0.5, k
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
                    tolerance: float = 0.005, error: str = "energy", sensitivity: list[float] | None = None,
                    rule: str = "mac_share") -> tuple[dict[str, list[int]], dict]:
    """The removal plan meeting ``target`` (cost ratio within ``tolerance`` below the goal).

    Args:
        costs: the cost model of the channel graph.
        target: the budget. power / clip / rule: the allowance factor (see :func:`allowances`).
        max_pruned: largest fraction of a group's channels removed. error: ``"energy"`` or ``"rms"``.
        sensitivity: per-group output sensitivity S_l (:func:`~.calibrate.group_sensitivity`), or None.

    Returns (plan, info) with info: eps0, per-group q and allowance, and the achieved cost ratio.
    """
    graph = costs.graph
    norms = [group_scores(g)[0].detach().clamp_min(0).sqrt() for g in graph.groups]
    gm = costs.group_macs()
    gp = costs.group_params() if rule == "macs_per_weight" else None
    goal = target.ratio(costs)

    def decide(eps0: float):
        eps = allowances(gm, eps0, power, clip, sensitivity, gp, rule)
        res = [channel_threshold(n, e, max_pruned, error=error) for n, e in zip(norms, eps)]
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



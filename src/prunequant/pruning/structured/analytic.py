"""Channel version of the analytic threshold: h(g) = sigmoid((||g||² − β²)/α²) on normalized group norms.

Each channel group l (a filter with everything coupled to it, a transformer MLP hidden unit) gets a gate
``h_c = h(s_c; α_l, β_l)`` on its normalized group norm ``s_c`` (see :mod:`.costs`), with one learnable (α_l, β_l)
per group, stored as log α, log β so they stay positive. The gate multiplies every output slice of the group
(producer rows and biases, BatchNorm scale and shift), so a gate near 0 silences the channel exactly like removing
it. The penalty is the *soft real cost*: the MACs (or parameters) of the shrunk model computed with the gates as
kept fractions (:class:`~.costs.CostModel`), relative to the dense model; a dual variable λ tracks a setpoint
ramped to the target. Gradients reach the weights (through s_c and the gates), α_l and β_l.

After training the hard decision is ``s_c > β_l²`` with one common factor on all β_l bisected so the real cost of
the shrunk model meets the target; then the channels are removed (:func:`~.shrink.remove_channels_`).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ...errors import LayerError
from ...training import TrainPlugin
from .costs import CostModel, StructuredTarget, close_gap, group_scores
from .groups import ChannelGraph

__all__ = ["ChannelGate", "ChannelGates", "ChannelAnalyticPlugin", "StructuredTarget", "attach_channel_gates_",
           "detach_channel_gates_"]


class ChannelGates(nn.Module):
    """Learnable (log α_l, log β_l) per channel group and the gate values h for every group."""

    def __init__(self, graph: ChannelGraph, alpha_init: float, beta_init: float, function: str = "sigmoid_sq"):
        super().__init__()
        self.graph = [graph]  # not a submodule
        self.refs: list[list[float]] = []
        for g in graph.groups:
            _, refs = group_scores(g)
            self.refs.append(refs)
        n = len(graph.groups)
        # s ≈ 1 for an average channel: β₀ = beta_init (edge at s = β₀²), α₀² = alpha_init, so the gates start soft
        # over the spread of s (h(1) = sigmoid((1 − β₀²)/alpha_init)) and gradients reach α, β from the first step
        self.log_alpha = nn.Parameter(torch.full((n,), 0.5 * math.log(alpha_init)))
        self.log_beta = nn.Parameter(torch.full((n,), math.log(beta_init)))
        # one common factor on every β, set by the budget tracker (the per-group β_l learn the allocation)
        self.register_buffer("factor", torch.ones(()))
        self.function = function
        self._cache: dict[tuple[int, bool], Tensor] = {}

    def clear_cache(self, *args) -> None:
        """Forget the gate values of the last forward (a forward pre-hook on the model calls this)."""
        self._cache.clear()

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp()

    @property
    def beta(self) -> Tensor:
        """Effective β_l (learned β_l times the common budget factor)."""
        return self.log_beta.exp() * self.factor

    def scores(self, i: int) -> Tensor:
        return group_scores(self.graph[0].groups[i], self.refs[i])[0]

    def h(self, i: int) -> Tensor:
        """Gate values of group i (computed once per forward of the model and shared by its gated tensors)."""
        key = (i, torch.is_grad_enabled())
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = self._h(i)
        return out

    def _h(self, i: int) -> Tensor:
        s = self.scores(i)
        a, b = self.alpha[i], self.beta[i]
        if self.function == "sigmoid_abs":
            return torch.sigmoid((s.clamp_min(0).sqrt() - b) / a)
        return torch.sigmoid((s - b * b) / (a * a))

    def all_h(self) -> list[Tensor]:
        """Gate values of every group, computed afresh (for the penalty, outside any forward)."""
        return [self._h(i) for i in range(len(self.graph[0].groups))]

    @torch.no_grad()
    def hard_keep(self, factor: float = 1.0, scores: list[Tensor] | None = None) -> list[Tensor]:
        """keep_c = s_c > (factor·β_l)², at least the strongest channel of each group kept."""
        out = []
        beta = self.beta.detach()
        for i in range(len(self.graph[0].groups)):
            s = scores[i] if scores is not None else self.scores(i).detach()
            k = (s > (factor * beta[i]) ** 2).to(torch.float64)
            if k.sum() == 0:
                k[int(s.argmax())] = 1.0
            out.append(k)
        return out


class ChannelGate(nn.Module):
    """Parametrization ``w -> w * h[root]`` along dim 0 for one member slice of a gated group."""

    def __init__(self, gates: ChannelGates, group: int, idx: Tensor, root: Tensor, rows: int):
        super().__init__()
        self._gates = [gates]  # shared, not a submodule (registered once on the model, see attach)
        self.group = group
        self.register_buffer("idx", idx.clone(), persistent=False)
        self.register_buffer("root", root.clone(), persistent=False)
        self.rows = rows

    def forward(self, w: Tensor) -> Tensor:
        h = self._gates[0].h(self.group).to(w.dtype)
        g = torch.ones(self.rows, dtype=w.dtype, device=w.device).index_put((self.idx,), h[self.root])
        return w * g.view(-1, *([1] * (w.dim() - 1)))


def attach_channel_gates_(graph: ChannelGraph, alpha_init: float = 0.2, beta_init: float = 0.5,
                          function: str = "sigmoid_sq") -> ChannelGates:
    """Put a :class:`ChannelGate` on every output slice (weight and bias) of every group of ``graph``.

    The gates' α, β live in a :class:`ChannelGates` module registered on the model as
    ``prunequant_channel_gates`` (so optimizers, DDP and state dicts see them). Returns it.
    """
    model = graph.model
    if hasattr(model, "prunequant_channel_gates"):
        raise LayerError(f"{type(model).__name__} already carries channel gates; finalize them first")
    if not graph.groups:
        raise LayerError(f"{type(model).__name__}: no prunable channel groups"
                         + (f" ({'; '.join(graph.skipped)})" if graph.skipped else ""))
    gates = ChannelGates(graph, alpha_init, beta_init, function)
    model.prunequant_channel_gates = gates
    gates._hook = model.register_forward_pre_hook(gates.clear_cache)
    from .attention import gate_slices

    for gi, g in enumerate(graph.groups):
        if g.handler == "heads":
            for mod, pname, idx, root, rows in gate_slices(g.root_module):
                t = getattr(mod, pname)
                parametrize.register_parametrization(mod, pname, ChannelGate(gates, gi, idx, root, rows).to(t.device))
            continue
        for m in g.producers:
            for pname in ("weight", "bias"):
                t = getattr(m.module, pname, None)
                if not isinstance(t, Tensor) or t.dim() < 1:
                    continue
                parametrize.register_parametrization(
                    m.module, pname, ChannelGate(gates, gi, m.idx, m.root, t.shape[0]).to(t.device))
    return gates


def detach_channel_gates_(model: nn.Module, bake: bool = True) -> None:
    """Remove every :class:`ChannelGate` (``bake``: keep w·h in the weights, else restore the raw weights)."""
    for mod in model.modules():
        if not parametrize.is_parametrized(mod):
            continue
        for pname in list(mod.parametrizations.keys()):
            plist = mod.parametrizations[pname]
            if any(isinstance(p, ChannelGate) for p in plist):
                if len(plist) > 1:
                    raise LayerError(f"{type(mod).__name__}.{pname}: other parametrizations sit on a gated tensor")
                parametrize.remove_parametrizations(mod, pname, leave_parametrized=bake)
    if hasattr(model, "prunequant_channel_gates"):
        hook = getattr(model.prunequant_channel_gates, "_hook", None)
        if hook is not None:
            hook.remove()
        del model.prunequant_channel_gates


class ChannelAnalyticPlugin(TrainPlugin):
    """Drives the channel gates in any training loop.

    ``loss = task_loss + plugin.loss(model, step)``; after each optimizer step ``plugin.on_step_end(model, step)``;
    put ``plugin.param_groups(model)`` in the optimizer (log α, log β at ``threshold_lr``).

    The loss is ``λ · soft_cost`` (λ = ``penalty_weight``, 1.0 when 0): it pulls each β_l up in proportion to the
    real cost its channels carry, against the task loss. The budget itself is tracked, not penalised: every
    ``track_every`` steps (default: every step) one common factor on all β is bisected so that the real cost of the
    hard decision equals a setpoint that ramps (cubically) from 1 to the target over ``target_ramp`` of
    ``total_steps`` (a dual λ oscillates on such short schedules; the factor cannot overshoot). α is annealed
    (cosine, multiplier ``alpha_anneal`` at the end) so the soft gates harden towards the snapped decision;
    ``dual_lr`` and ``alpha_max_ratio`` are accepted for config compatibility and unused.
    """

    name = "channel_analytic"

    def __init__(self, gates: ChannelGates, costs: CostModel, target: StructuredTarget, *, threshold_lr: float = 0.02,
                 dual_lr: float = 1.0, penalty_weight: float = 0.0, target_ramp: float = 0.6,
                 alpha_max_ratio: float | None = 0.5, alpha_anneal: float = 0.1, learn_alpha: bool = True,
                 total_steps: int | None = None, track_every: int = 1):
        self.gates, self.costs, self.target = gates, costs, target
        self.threshold_lr, self.dual_lr = threshold_lr, dual_lr
        self.lam = float(penalty_weight) if penalty_weight > 0 else 1.0
        self.track_every = max(1, int(track_every))
        self.target_ramp, self.alpha_max_ratio, self.alpha_anneal = target_ramp, alpha_max_ratio, alpha_anneal
        self.total_steps = total_steps
        self.goal = target.ratio(costs)
        self.alpha0 = gates.log_alpha.detach().clone()
        gates.log_alpha.requires_grad_(learn_alpha)
        self.cost = float(self.hard_cost())
        self.soft = self.cost
        self.step = 0

    def setpoint(self, step: int) -> float:
        ramp = int(self.target_ramp * self.total_steps) if self.total_steps else 0
        if ramp <= 0 or step >= ramp:
            return self.goal
        t = step / ramp
        return 1.0 + (self.goal - 1.0) * (1.0 - (1.0 - t) ** 3)

    def soft_cost(self) -> Tensor:
        return self.target.measure(self.costs, self.gates.all_h())

    @torch.no_grad()
    def hard_cost(self, factor: float = 1.0) -> float:
        return float(self.target.measure(self.costs, self.gates.hard_keep(factor)))

    # hooks
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        params = [self.gates.log_beta] + ([self.gates.log_alpha] if self.gates.log_alpha.requires_grad else [])
        return [{"params": params, "lr": self.threshold_lr, "weight_decay": 0.0}]

    def loss(self, model: nn.Module, step: int) -> Tensor | None:
        c = self.soft_cost()
        self.soft = float(c.detach())
        return (self.lam * c).float() if self.lam > 0 else None

    @torch.no_grad()
    def on_step_end(self, model: Any, step: int) -> None:
        g = self.gates
        if self.alpha_anneal != 1.0 and self.total_steps:
            t = min(step / self.total_steps, 1.0)
            mult = self.alpha_anneal + (1 - self.alpha_anneal) * 0.5 * (1 + math.cos(math.pi * t))
            g.log_alpha.copy_(torch.minimum(g.log_alpha, self.alpha0 + math.log(mult)))
        if step % self.track_every == 0 or (self.total_steps and step >= self.total_steps):
            self.track(self.setpoint(step))
        else:
            self.cost = self.hard_cost()

    @torch.no_grad()
    def track(self, goal: float, iters: int = 24) -> float:
        """Set the common β factor so the hard cost is at most ``goal`` (largest model within it); returns cost."""
        g = self.gates
        scores = [g.scores(i).detach() for i in range(len(g.graph[0].groups))]

        def cost(mult: float) -> float:
            return float(self.target.measure(self.costs, g.hard_keep(mult, scores)))

        lo, hi = 0.0, 1.0
        while cost(hi) > goal and hi < 1e4:
            lo, hi = hi, hi * 2.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if cost(mid) > goal:
                lo = mid
            else:
                hi = mid
        g.factor.mul_(hi)
        self.cost = cost(1.0)
        return self.cost

    def on_epoch_end(self, model: Any, epoch: int, logs: dict) -> dict | None:
        return {"lambda": self.lam, "cost_hard": self.cost, "cost_soft": self.soft, "cost_goal": self.goal}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "alpha0": self.alpha0.clone(), "factor": self.gates.factor.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = float(state["lam"])
        self.alpha0 = state["alpha0"].clone()
        if "factor" in state:
            self.gates.factor.copy_(state["factor"])

    # the hard decision
    @torch.no_grad()
    def snap(self, tolerance: float = 0.002) -> tuple[float, dict[str, list[int]]]:
        """Bisect one common factor on all β so the hard cost meets the goal; returns (factor, removal plan).

        The factor is the smallest for which the cost is at most the goal (the largest model within budget);
        discrete steps leave it at most one channel's cost below the goal.
        """
        lo, hi = 0.0, 1.0
        while self.hard_cost(hi) > self.goal and hi < 1e6:
            hi *= 2.0
        if self.hard_cost(hi) > self.goal + tolerance:
            raise LayerError(f"channel target {self.target} unreachable: keeping one channel per group costs "
                             f"{self.hard_cost(hi):.3f} of the dense model")
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.hard_cost(mid) > self.goal:
                lo = mid
            else:
                hi = mid
        keep = self.gates.hard_keep(hi)

        scores = [self.gates.scores(i).detach() for i in range(len(keep))]
        keep = close_gap(self.costs, self.target, keep, scores, self.goal, tolerance)
        plan = {g.name: torch.nonzero(k == 0).flatten().tolist()
                for g, k in zip(self.gates.graph[0].groups, keep) if (k == 0).any()}
        return hi, plan

"""Reaching a target sparsity without hand-tuning λ: dual ascent on the penalty weight, a per-group minimum
density (projection of β), and a final snap of all β by one common factor."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .parametrization import AnalyticThreshold

# (module, param_name, parametrization, tensor that enters the parametrization)
MaskedWeight = tuple[AnalyticThreshold, Tensor]


class SparsityController:
    """Dual ascent for the constraint ``sparsity ≥ setpoint(step)`` with a scale-free error:
    λ ← max(0, λ + lr · log(density / setpoint density)), density = 1 − sparsity.

    The log-density error weighs 97 % vs 98 % like 70 % vs 80 % (both ≈ 0.4), so one ``lr`` serves every target.
    λ stays ≥ 0: a negative λ would reward density, and once the band |w| < β empties, ∂h/∂β vanishes and β
    cannot come back; an overshoot is undone by the task loss and the final snap instead.

    The setpoint rises from ``initial`` to ``target`` along a cubic over ``ramp_steps`` steps (0 = at once), so
    the thresholds grow gradually while the weights adapt. λ is the only state; it is saved for exact resume.
    """

    def __init__(self, target: float, initial: float = 0.0, ramp_steps: int = 0, lr: float = 0.5,
                 lam: float = 0.0, kp: float = 0.0):
        self.target, self.initial, self.ramp_steps, self.lr = float(target), float(initial), int(ramp_steps), lr
        self.kp = float(kp)
        self.integral = float(lam)
        self.lam = float(lam)

    def setpoint(self, step: int) -> float:
        if self.ramp_steps <= 0 or self.initial >= self.target:
            return self.target
        t = min(max(step, 0) / self.ramp_steps, 1.0)
        return self.target + (self.initial - self.target) * (1.0 - t) ** 3

    def update(self, step: int, sparsity: float) -> float:
        density, wanted = max(1.0 - sparsity, 1e-12), max(1.0 - self.setpoint(step), 1e-12)
        err = math.log(density / wanted)
        self.integral = max(0.0, self.integral + self.lr * err)
        self.lam = self.integral + self.kp * err
        return self.lam

    def state_dict(self) -> dict:
        return {"lam": self.lam, "integral": self.integral, "initial": self.initial, "target": self.target,
                "ramp_steps": self.ramp_steps}

    def load_state_dict(self, state: dict) -> None:
        self.lam, self.integral = float(state["lam"]), float(state["integral"])
        self.initial = float(state["initial"])
        self.target, self.ramp_steps = float(state["target"]), int(state["ramp_steps"])


def _groups(par: AnalyticThreshold, w: Tensor) -> Tensor:
    """|w| as (groups, elements per group): one row per (α, β) pair."""
    return w.detach().abs().reshape(par.log_beta.numel(), -1)


@torch.no_grad()
def beta_caps(par: AnalyticThreshold, w: Tensor, min_density: float) -> Tensor:
    """Largest β per group that still keeps ``ceil(min_density · n)`` weights (shape of ``log_beta``)."""
    a = _groups(par, w)
    k = max(1, math.ceil(min_density * a.shape[1])) if min_density > 0 else 0
    if k == 0:
        return torch.full_like(par.log_beta, float("inf"))
    kth = torch.topk(a, k, dim=1).values[:, -1]
    cap = torch.clamp(kth * (1 - 1e-6), min=torch.finfo(a.dtype).tiny)
    return cap.reshape(par.log_beta.shape)


@torch.no_grad()
def project_min_density_(items: Sequence[MaskedWeight], min_density: float) -> None:
    """Clamp each β so its group keeps at least ``min_density`` of its weights."""
    if min_density <= 0:
        return
    for par, w in items:
        cap = beta_caps(par, w, min_density).to(par.log_beta.dtype)
        par.log_beta.copy_(torch.minimum(par.log_beta, cap.log()))


@torch.no_grad()
def clamp_alpha_(items: Sequence[MaskedWeight], max_ratio: float) -> None:
    """Keep the learned α ≤ max_ratio · β so that h(0) = sigmoid(−(β/α)²) ≤ sigmoid(−1/max_ratio²) stays ≈ 0
    (the annealing factor ``alpha_scale`` ≤ 1 multiplies on top, tightening the band further)."""
    for par, _ in items:
        cap = par.log_beta + math.log(max_ratio)
        par.log_alpha.copy_(torch.minimum(par.log_alpha, cap))


@torch.no_grad()
def hard_counts(items: Sequence[MaskedWeight], beta_factor: float = 1.0,
                min_density: float = 0.0) -> tuple[int, int]:
    """(kept, total) weights under the hard masks |w| > β·factor (β capped by ``min_density``)."""
    kept = total = 0
    for par, w in items:
        a = _groups(par, w)
        beta = par.beta.detach().reshape(-1, 1) * beta_factor
        if min_density > 0:
            beta = torch.minimum(beta, beta_caps(par, w, min_density).reshape(-1, 1))
        kept += int((a > beta).sum())
        total += a.numel()
    return kept, total


def hard_sparsity(items: Sequence[MaskedWeight]) -> float:
    kept, total = hard_counts(items)
    return 1.0 - kept / max(total, 1)


@torch.no_grad()
def snap_to_target_(items: Sequence[MaskedWeight], target: float, min_density: float = 0.0,
                    iters: int = 60) -> float:
    """Scale every β by one common factor c (bisection on log c) so the global hard sparsity is as close to
    ``target`` as possible; returns c. Per-group minimum density caps are respected."""
    lo, hi = -8.0, 8.0  # log c
    best_c, best_err = 1.0, abs(1.0 - hard_counts(items, 1.0, min_density)[0] / hard_counts(items)[1] - target)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        kept, total = hard_counts(items, math.exp(mid), min_density)
        s = 1.0 - kept / total
        if abs(s - target) < best_err:
            best_c, best_err = math.exp(mid), abs(s - target)
        if s < target:
            lo = mid
        else:
            hi = mid
    for par, w in items:
        beta = par.beta * best_c
        if min_density > 0:
            beta = torch.minimum(beta, beta_caps(par, w, min_density))
        par.log_beta.copy_(beta.log())
    return best_c

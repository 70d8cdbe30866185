"""Reaching bit, size and BOP targets without hand-tuned loss weights.

* :class:`TargetController` - one Lagrange multiplier per target, updated by dual ascent on the *hard* (finalized)
  measure: λ_k ← λ_k + lr · log(measure_k / setpoint_k) (``error="log"``, default; ``"ratio"``: measure/setpoint
  − 1); the loss adds λ_k · soft_k / setpoint_k (``norm="setpoint"``, default; ``"target"``: / target_k). The
  setpoint moves (cubic) from the starting value to the target over the ramp, so compression is gradual.
* :func:`repair_bits_` - at hardening, lower chosen bit-widths greedily (smallest drop in logit per unit of
  violation removed) until the bit/size/BOP targets hold; :func:`fill_budget_` raises them while they still hold.
* :func:`snap_beta_` - at hardening, scale every β by one common factor (bisection) so size or BOPs meet their
  target with the fewest weights removed; :func:`snap_sparsity_` likewise for the sparsity target.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import ConfigError
from ..pruning.analytic import AnalyticThreshold, project_min_density_
from .costs import JointLayer, aggregate_measures, hard_costs, layer_measures

RELATIVE_TOL = 1e-6


class TargetController:
    """Dual ascent on ``measure_k = setpoint_k`` (k in wbits, abits, size_bytes, bops).

    ``mode="at_most"`` (default): λ >= 0, a pure upper bound; ``"equal"``: λ may turn negative when the measure
    falls below its setpoint, so an overshoot is undone (as the analytic sparsity controller does).
    ``initial``: the measures at the start (setpoints ramp from there); ``lam``: starting λ.

    ``error="log"`` (default): the dual step uses log(measure / setpoint), symmetric and bounded, so a measure
    64x above a fast-moving setpoint raises λ by lr·4.2, not lr·63 (``"ratio"``: measure / setpoint − 1, which
    overshot on short schedules). ``norm="setpoint"`` (default): the loss term is λ·soft / setpoint(step), so at
    every point of the ramp λ = 1 weighs a 1 % cost change like 0.01 of the task loss (``"target"``: / target,
    which weighs the cost up to ratio-times more at the start of the ramp than at its end).
    """

    def __init__(self, targets: dict[str, float], initial: dict[str, float], ramp_steps: int = 0,
                 lr: float = 0.05, lam: dict[str, float] | None = None, mode: str = "at_most",
                 error: str = "log", norm: str = "setpoint"):
        if mode not in ("equal", "at_most"):
            raise ConfigError(f"target mode must be 'equal' or 'at_most', got {mode!r}")
        if error not in ("log", "ratio"):
            raise ConfigError(f"dual error must be 'log' or 'ratio', got {error!r}")
        if norm not in ("setpoint", "target"):
            raise ConfigError(f"cost normalisation must be 'setpoint' or 'target', got {norm!r}")
        self.targets = dict(targets)
        self.initial = {k: float(initial.get(k, v)) for k, v in self.targets.items()}
        self.ramp_steps, self.lr, self.mode = int(ramp_steps), float(lr), mode
        self.error, self.norm = error, norm
        self.lam = {k: float((lam or {}).get(k, 0.0)) for k in self.targets}

    def setpoint(self, key: str, step: int) -> float:
        target, start = self.targets[key], self.initial[key]
        if self.ramp_steps <= 0 or start <= target:
            return target
        t = min(max(step, 0) / self.ramp_steps, 1.0)
        return target + (start - target) * (1.0 - t) ** 3

    def update(self, step: int, measures: dict[str, float]) -> None:
        for k in self.targets:
            r = max(measures[k], 1e-12) / self.setpoint(k, step)
            v = math.log(r) if self.error == "log" else r - 1.0
            lam = self.lam[k] + self.lr * v
            self.lam[k] = max(0.0, lam) if self.mode == "at_most" else lam

    def loss(self, soft: dict[str, torch.Tensor], step: int | None = None) -> torch.Tensor | None:
        """Σ_k λ_k · soft_k / reference_k (reference: the setpoint at ``step`` with ``norm="setpoint"`` and a
        step given, else the target)."""
        def ref(k):
            return self.setpoint(k, step) if self.norm == "setpoint" and step is not None else self.targets[k]

        terms = [self.lam[k] * soft[k] / ref(k) for k in self.targets if self.lam[k] != 0]
        return sum(terms) if terms else None

    def state_dict(self) -> dict:
        return {"lam": dict(self.lam), "initial": dict(self.initial), "targets": dict(self.targets),
                "ramp_steps": self.ramp_steps, "mode": self.mode, "error": self.error, "norm": self.norm}

    def load_state_dict(self, state: dict) -> None:
        self.lam = {k: float(v) for k, v in state["lam"].items()}
        self.initial = {k: float(v) for k, v in state["initial"].items()}
        self.targets = {k: float(v) for k, v in state["targets"].items()}
        self.ramp_steps = int(state["ramp_steps"])
        self.mode = state.get("mode", self.mode)
        self.error = state.get("error", self.error)
        self.norm = state.get("norm", self.norm)


def violations(measures: dict[str, float], targets: dict[str, float], tol: float = 0.0) -> dict[str, float]:
    """Relative excess ``measure/target − 1`` of every target that is exceeded by more than ``tol``."""
    out = {}
    for k, t in targets.items():
        v = measures[k] / t - 1.0
        if v > tol + RELATIVE_TOL:
            out[k] = v
    return out


def _moves(layers: list[JointLayer], step: int = -1):
    """Candidate moves: (mixture, new choice, logit cost) changing one weight or feature-map choice by one
    candidate (``step=-1`` lower, ``+1`` higher; per-channel mixtures move their widest / narrowest channels)."""
    seen = set()
    for l in layers:
        for mix in (l.wq.mixture, l.aq.mixture if l.aq is not None else None):
            if mix is None or id(mix) in seen or not mix.hard:
                continue
            seen.add(id(mix))
            c, top = mix.chosen, len(mix.bits) - 1
            if c.dim() == 0:
                if not 0 <= int(c) + step <= top:
                    continue
                new = c + step
                cost = float(mix.logits[int(c)] - mix.logits[int(new)])
            else:
                if not bool(((c + step >= 0) & (c + step <= top)).any()):
                    continue
                edge = c.max() if step < 0 else c.min()
                new = torch.where(c == edge, (c + step).clamp(0, top), c)
                lg = mix.logits.detach()
                cost = float((lg.gather(0, c[None]) - lg.gather(0, new[None])).sum())
            yield mix, new, cost


class _MoveEvaluator:
    """Hard measures after changing one mixture's choice, recomputing only the tensors that mixture feeds (a
    weight mixture: its tensor; a feature-map mixture: the tensors of its module) instead of the whole model."""

    def __init__(self, layers: list[JointLayer], fixed_bits: int):
        self.layers, self.fixed_bits = layers, fixed_bits
        self.rows = [layer_measures(l) for l in layers]
        self.users: dict[int, list[int]] = {}
        for i, l in enumerate(layers):
            for mix in (l.wq.mixture, l.aq.mixture if l.aq is not None else None):
                if mix is not None:
                    self.users.setdefault(id(mix), []).append(i)

    def current(self) -> dict[str, float]:
        return aggregate_measures(self.rows, self.fixed_bits)

    def after(self, mix, new) -> tuple[dict[str, float], dict[int, dict]]:
        """Measures with ``mix.chosen = new`` (the choice is restored) and the changed rows."""
        old = mix.chosen.clone()
        mix.chosen.copy_(new)
        changed = {i: layer_measures(self.layers[i]) for i in self.users.get(id(mix), [])}
        mix.chosen.copy_(old)
        rows = [changed.get(i, r) for i, r in enumerate(self.rows)]
        return aggregate_measures(rows, self.fixed_bits), changed

    def apply(self, mix, new, changed: dict[int, dict]) -> None:
        mix.chosen.copy_(new)
        for i, r in changed.items():
            self.rows[i] = r


@torch.no_grad()
def repair_bits_(layers: list[JointLayer], targets: dict[str, float], fixed_bits: int, tol: float = 0.0,
                 keys: tuple[str, ...] = ("wbits", "abits", "size_bytes", "bops"),
                 log: Callable[[str], None] | None = None) -> int:
    """Lower hardened choices until the ``keys`` targets hold; returns the number of moves made.

    Each move lowers one mixture's choice by one candidate (per-channel mixtures: their widest channels),
    chosen to minimise (logit drop) / (sum of relative violation removed).
    """
    active = {k: v for k, v in targets.items() if k in keys}
    if not active:
        return 0
    n_moves = 0
    ev = _MoveEvaluator(layers, fixed_bits)
    meas = ev.current()
    viol = violations(meas, active, tol)
    while viol:
        best = None
        for mix, new, cost in _moves(layers):
            after, changed = ev.after(mix, new)
            gain = sum((meas[k] - after[k]) / active[k] for k in viol)
            if gain <= 0:
                continue
            score = max(cost, 0.0) / gain
            if best is None or score < best[0]:
                best = (score, mix, new, after, changed)
        if best is None:
            break
        _, mix, new, meas, changed = best
        ev.apply(mix, new, changed)
        n_moves += 1
        viol = violations(meas, active, tol)
    if log is not None and n_moves:
        log(f"bit repair: {n_moves} move(s); remaining violations {viol or 'none'}")
    return n_moves


@torch.no_grad()
def snap_beta_(layers: list[JointLayer], targets: dict[str, float], fixed_bits: int, tol: float = 0.0,
               keys: tuple[str, ...] = ("size_bytes", "bops"), min_density: float = 0.0, shrink: bool = False,
               iters: int = 30) -> float:
    """Scale every analytic β by the smallest common factor c that meets the ``keys`` targets (each group keeping
    ``min_density`` of its weights); returns c. ``shrink=False``: c >= 1 (only prune more, when a target is
    exceeded); ``shrink=True``: c may be < 1, so weights the soft phase pruned beyond the budget come back."""
    active = {k: v for k, v in targets.items() if k in keys}
    items = [(l.mask, l.raw) for l in layers if isinstance(l.mask, AnalyticThreshold)]
    if not active or not items:
        return 1.0

    def bad(log_c: float) -> bool:
        return bool(violations(hard_costs(layers, fixed_bits, math.exp(log_c), min_density), active, tol))

    if not shrink and not bad(0.0):
        return 1.0
    lo, hi = (-8.0 if shrink else 0.0), 8.0  # log c
    if bad(lo):
        if not bad(hi):
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if bad(mid) else (lo, mid)
        c = hi
    else:
        c = lo
    for p, _ in items:
        p.log_beta.add_(c)
    project_min_density_(items, min_density)
    return math.exp(c)


@torch.no_grad()
def snap_sparsity_(layers: list[JointLayer], target: float, fixed_bits: int, min_density: float = 0.0,
                   iters: int = 30) -> float:
    """Scale every analytic β by one common factor c (bisection on log c) so that the sparsity of the finalized
    weights — mask zeros plus weights the quantizer rounds to zero — is as close to ``target`` as possible;
    returns c."""
    items = [(l.mask, l.raw) for l in layers if isinstance(l.mask, AnalyticThreshold)]
    if not items:
        return 1.0

    def sparsity(log_c: float) -> float:
        return hard_costs(layers, fixed_bits, math.exp(log_c), min_density)["sparsity"]

    best_c, best_err = 0.0, abs(sparsity(0.0) - target)
    lo, hi = -8.0, 8.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        s = sparsity(mid)
        if abs(s - target) < best_err:
            best_c, best_err = mid, abs(s - target)
        lo, hi = (mid, hi) if s < target else (lo, mid)
    for p, _ in items:
        p.log_beta.add_(best_c)
    project_min_density_(items, min_density)
    return math.exp(best_c)


@torch.no_grad()
def fill_budget_(layers: list[JointLayer], targets: dict[str, float], fixed_bits: int,
                 min_sparsity: float | None = None, log: Callable[[str], None] | None = None) -> int:
    """Spend what the soft phase left of the budget: raise hardened choices one candidate at a time while every
    target still holds (and the sparsity stays >= ``min_sparsity``), most preferred (smallest logit drop) first;
    returns the number of moves. Nothing happens without targets."""
    if not targets:
        return 0
    n_moves = 0
    ev = _MoveEvaluator(layers, fixed_bits)
    while True:
        best = None
        for mix, new, cost in _moves(layers, +1):
            after, changed = ev.after(mix, new)
            if violations(after, targets) or (min_sparsity is not None and after["sparsity"] < min_sparsity):
                continue
            if best is None or cost < best[0]:
                best = (cost, mix, new, changed)
        if best is None:
            break
        ev.apply(best[1], best[2], best[3])
        n_moves += 1
    if log is not None and n_moves:
        log(f"budget fill: raised {n_moves} choice(s) within the targets")
    return n_moves

"""MAC-budget pruning as a transform (no data): a :class:`MacBudgetPruner` that plans and applies one prune round
at a time on the surviving weights (per-layer allowance from MAC load, q-bisection of the threshold q * std, eps0
searched so the round's effective-MAC target holds as :func:`prunequant.analysis.report` counts it)."""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import torch
from torch import nn

from ...core.checks import check_weight
from ...core.targets import weight_key
from ...errors import ConfigError, LayerError
from ..base import apply_mask_, global_sparsity, kept_mask, prunable_modules
from .allowance import allowance_factors, layer_kind
from .config import MacBudgetConfig
from .history import LayerRound, MacBudgetResult, RoundRecord, format_round
from .mac_model import weight_uses
from .planner import RoundPlan, RoundPlanner
from .threshold import SortedMagnitudes

log = logging.getLogger("prunequant.mac_budget")
_MAX_CORRECTIONS = 3


def round_targets(start: float, target: float, rounds: int, schedule: str) -> list[float]:
    """Effective-MAC reduction to reach after each round, from ``start`` (current) to ``target``.

    ``geometric``: every round removes the same fraction of the remaining MACs; ``linear``: equal steps.
    """
    if target <= start:
        return [start] * rounds
    if schedule == "linear":
        return [start + (target - start) * r / rounds for r in range(1, rounds + 1)]
    keep0, keep1 = 1.0 - start, 1.0 - target
    return [1.0 - keep0 * (keep1 / keep0) ** (r / rounds) for r in range(1, rounds + 1)]


def _report_macs(model: nn.Module, example_input: Any) -> tuple[float, float]:
    from ...analysis import report

    tot = report(model, example_input).total
    return float(tot.macs), float(tot.effective_macs)


class _Layer:
    """A prunable tensor with its name, kind and per-weight MAC uses."""

    def __init__(self, name: str, module: nn.Module, pname: str, uses: torch.Tensor):
        self.name = weight_key(name, pname)
        self.module, self.pname, self.uses = module, pname, uses
        self.kind = layer_kind(module)

    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.pname).detach()  # effective weight (masks applied)


def _plan_round(layers: list[_Layer], config: MacBudgetConfig, target: float | None, mac_dense: float,
                mac_eff: float) -> tuple[RoundPlan, SortedMagnitudes, list, list[str], RoundPlanner]:
    """Plan one round on the surviving weights: (plan, sorted magnitudes, alive masks, skip notes, planner)."""
    ws = [ly.weight() for ly in layers]
    for ly, w in zip(layers, ws):
        check_weight(w, ly.name)
    alive = [kept_mask(ly.module, ly.pname) for ly in layers]
    mags = SortedMagnitudes.build(ws, alive, config.norm, config.error_scale, config.relative_error)
    notes = []
    for n, sd in zip(mags.count.tolist(), mags.sigma.tolist()):
        if n < 2:
            notes.append(f"{n} surviving weight(s): nothing left to threshold")
        elif not sd > 0:
            notes.append("zero variance: threshold q*std is 0")
        else:
            notes.append("")
    skipped = torch.tensor([bool(n) for n in notes])
    numel = torch.tensor([w.numel() for w in ws])
    pruned_before = numel - mags.count
    k_min = (torch.tensor([config.min_fraction(ly.kind) for ly in layers], dtype=torch.float64)
             * numel).ceil().long() - pruned_before
    k_max = (torch.tensor([config.max_fraction(ly.kind) for ly in layers], dtype=torch.float64)
             * numel).floor().long() - pruned_before
    k_min, k_max = k_min.clamp(0).minimum(mags.count), k_max.clamp(0).minimum(mags.count)
    uses_alive = [ly.uses.to(torch.float64) * a.cpu() for ly, a in zip(layers, alive)]
    load = [float((u if config.mac_source == "effective" else ly.uses).sum()) for u, ly in zip(uses_alive, layers)]
    factors = allowance_factors(load, numel, config.allowance, config.allowance_power, config.allowance_clip)
    planner = RoundPlanner(mags, factors, k_min, k_max, mags.sorted_prefix([ly.uses for ly in layers], alive),
                           mac_eff, mac_dense, config.q_min, config.q_max, config.q_tol, config.max_bisect_iter,
                           skipped=skipped)
    plan = planner.search(target) if target is not None else planner.at(float(config.base_allowance))
    return plan, mags, alive, notes, planner


def _apply(layers: list[_Layer], plan: RoundPlan, mags: SortedMagnitudes, alive: list) -> None:
    keeps = mags.keep_masks(plan.pruned, [ly.weight() for ly in layers], alive)
    for ly, keep in zip(layers, keeps):
        apply_mask_(ly.module, ly.pname, keep, layer_name=ly.name)


class MacBudgetPruner:
    """The state of MAC-budget pruning on one model: its layers, their MAC uses, the round schedule and the
    records so far. :meth:`prune_round` applies the next round's masks (FixedMask); no data, no training.

    Args:
        model: the model (masks are attached in place).
        config: the method config.
        example_input: one model input that MACs are counted for.
        verbose: log each round's per-layer table through ``logging`` (INFO, logger ``prunequant.mac_budget``).
    """

    def __init__(self, model: nn.Module, config: MacBudgetConfig, example_input: Any, verbose: bool = False):
        if example_input is None:
            raise ConfigError("MAC-budget pruning needs example_input= (one input for counting MACs) or training "
                              "data to take one from")
        self.model, self.config, self.example_input, self.verbose = model, config, example_input, verbose
        targets = prunable_modules(model, config.include, config.exclude)
        if not targets:
            raise LayerError(f"{type(model).__name__}: no prunable layers selected (include={config.include}, "
                             f"exclude={config.exclude})")
        for name, module, pname in targets:
            check_weight(getattr(module, pname).detach(), weight_key(name, pname))
        uses = weight_uses(model, example_input, targets)
        self.layers = [_Layer(n, m, p, u) for (n, m, p), u in zip(targets, uses)]
        self.mac_dense, self.mac_eff = _report_macs(model, example_input)
        if not self.mac_dense > 0:
            raise ConfigError(f"{type(model).__name__}: the report counts no MACs for this example input")
        start = 1.0 - self.mac_eff / self.mac_dense
        self.target = config.mac_reduction
        self.schedule = (round_targets(start, self.target, config.rounds, config.schedule)
                         if self.target is not None else None)
        self.result = MacBudgetResult(config=config.to_dict(), target=self.target)
        self.max_rounds = config.rounds + (config.max_extra_rounds if self.target is not None else 0)
        self._warned: set[str] = set()

    @property
    def round(self) -> int:
        return len(self.result.rounds)

    @property
    def done(self) -> bool:
        """All scheduled rounds ran and (with a target) the target is met, or no extra round is left."""
        r = self.round
        return r >= self.max_rounds or (r >= self.config.rounds and self.result.met_target is not False)

    def prune_round(self) -> RoundRecord:
        """Plan and apply the next round's masks; returns its record (also appended to ``self.result``)."""
        config, rnd = self.config, self.round + 1
        t0 = time.perf_counter()
        goal = None if self.target is None else (self.schedule[rnd - 1] if rnd <= config.rounds else self.target)
        ask = goal
        for _ in range(_MAX_CORRECTIONS + 1):
            plan, mags, alive, notes, planner = _plan_round(self.layers, config, ask, self.mac_dense, self.mac_eff)
            _apply(self.layers, plan, mags, alive)
            _, eff_now = _report_macs(self.model, self.example_input)
            achieved = 1.0 - eff_now / self.mac_dense
            if goal is None or achieved >= goal - 1e-9 or abs(achieved - plan.reduction) < 1e-12:
                break
            # the report disagrees with the MAC model (custom layers): undo and ask for the difference
            for ly, a in zip(self.layers, alive):
                apply_mask_(ly.module, ly.pname, a, layer_name=ly.name)
            ask = min(ask + (goal - achieved), 1.0 - 1e-9)
        for ly, note in zip(self.layers, notes):
            if note and ly.name not in self._warned:
                self._warned.add(ly.name)
                warnings.warn(f"MAC-budget pruning: layer '{ly.name}' skipped: {note}", stacklevel=3)
        removed = planner.removed_macs(plan.pruned)
        rec = RoundRecord(round=rnd, target=goal, eps0=plan.eps0, reduction_planned=plan.reduction,
                          reduction=achieved, dense_macs=self.mac_dense, effective_macs=eff_now,
                          sparsity=global_sparsity(self.model, config.include, config.exclude))
        for i, ly in enumerate(self.layers):
            n = ly.uses.numel()
            alive_n = int(mags.count[i])
            k = int(plan.pruned[i])
            rec.layers.append(LayerRound(
                layer=ly.name, kind=ly.kind, numel=n, alive_before=alive_n, pruned_new=k,
                pruned_fraction=1.0 - (alive_n - k) / n, sigma=float(mags.sigma[i]), q=float(plan.q[i]),
                threshold=float(plan.threshold[i]), error=float(plan.error[i]), allowance=float(plan.allowance[i]),
                allowance_factor=float(planner.factors[i]), macs=float(ly.uses.sum()),
                effective_macs=float((ly.uses * alive[i].cpu()).sum() - removed[i]), bound=plan.clamp[i],
                note=notes[i]))
        self.mac_eff = eff_now
        rec.seconds = round(time.perf_counter() - t0, 3)
        self.result.rounds.append(rec)
        self.result.reduction, self.result.sparsity = achieved, rec.sparsity
        return rec

    def log_round(self, rec: RoundRecord) -> None:
        if self.verbose:
            log.info("%s", format_round(rec))

    def finish(self) -> MacBudgetResult:
        """Warn when the target was missed; returns the result."""
        if self.target is not None and not self.result.met_target:
            warnings.warn(f"MAC-budget pruning reached an effective-MAC reduction of {self.result.reduction:.4f}, "
                          f"short of the target {self.target:.4f} (tolerance {self.config.tolerance})", stacklevel=3)
        return self.result

"""``prune_(model, MacBudgetConfig(...), train=loader)``: prune -> retrain rounds until the report's
effective-MAC reduction reaches the target (US 2019/0050735 A1, reconstructed; docs/mac_budget_pruning.md).

Each round: read the surviving weights, give every layer an allowance eps_l = eps0 * factor_l from its MAC load,
bisect q per layer so that the pruning error per weight stays within eps_l, search eps0 so the round's
effective-MAC target is met, apply the masks (FixedMask), check the reduction with ``analysis.report``, retrain
with masks fixed, log a rich table and append to the JSON history.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from ...api import register_handler
from ...errors import ConfigError, LayerError
from ...training import TrainConfig, Trainer, accuracy, evaluate
from ..base import apply_mask_, check_weight, finalize_masks_, global_sparsity, kept_mask, prunable_modules
from .allowance import allowance_factors, layer_kind
from .config import MacBudgetConfig
from .history import LayerRound, MacBudgetResult, RoundRecord, print_round
from .mac_model import weight_uses
from .planner import RoundPlan, RoundPlanner
from .threshold import SortedMagnitudes

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


def _example_input(example_input: Any, train: Any) -> Any:
    if example_input is not None:
        return example_input
    if isinstance(train, DataLoader):
        batch = next(iter(train))
        return batch[0][:1]
    raise ConfigError("MAC-budget pruning needs example_input= (one input for counting MACs) or a train "
                      "DataLoader to take one from")


def _report_macs(model: nn.Module, example_input: Any) -> tuple[float, float]:
    from ...analysis import report

    tot = report(model, example_input).total
    return float(tot.macs), float(tot.effective_macs)


class _Layer:
    """A prunable tensor with its name, kind and per-weight MAC uses."""

    def __init__(self, name: str, module: nn.Module, pname: str, uses: torch.Tensor):
        self.name = f"{name}.{pname}" if name else pname
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
    for ly, n, sd in zip(layers, mags.count.tolist(), mags.sigma.tolist()):
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


def _retrain(model: nn.Module, train: Any, val: Any, base: TrainConfig, config: MacBudgetConfig, rnd: int,
             loss_fn: Callable, metric: Callable) -> None:
    if train is None or config.retrain_epochs == 0:
        return
    if callable(train) and not isinstance(train, DataLoader):
        train(model, rnd)
        return
    ckpt = str(Path(base.checkpoint_dir) / f"round{rnd}") if base.checkpoint_dir else None
    cfg = dataclasses.replace(base, epochs=config.retrain_epochs, seed=base.seed + rnd, checkpoint_dir=ckpt)
    Trainer(model, cfg, loss_fn=loss_fn, metric=metric).fit(train, val)


@register_handler(MacBudgetConfig, finalize=finalize_masks_)
def prune_mac_budget_(model: nn.Module, config: MacBudgetConfig, train: DataLoader | Callable | None = None,
                      val: DataLoader | None = None, train_config: TrainConfig | None = None,
                      example_input: Any = None, loss_fn: Callable = F.cross_entropy, metric: Callable = accuracy,
                      history_path: str | Path | None = None, console: Console | None = None) -> MacBudgetResult:
    """MAC-budget-prune ``model`` in place (masks stay as FixedMask parametrizations; ``finalize_`` bakes them).

    ``train``: a DataLoader (retrained ``config.retrain_epochs`` per round by the shared Trainer with
    ``train_config``, lr ``config.retrain_lr`` unless ``train_config`` is given) or a callable
    ``train(model, round)`` doing its own retraining; ``None`` prunes without retraining. ``val``: logged metric
    before/after each retrain. ``example_input``: the input MACs are counted for (default: one sample of
    ``train``). ``history_path``: JSON history written after every round.
    """
    console = console or Console(stderr=True)
    example_input = _example_input(example_input, train)
    targets = prunable_modules(model, config.include, config.exclude)
    if not targets:
        raise LayerError(f"{type(model).__name__}: no prunable layers selected (include={config.include}, "
                         f"exclude={config.exclude})")
    for name, module, pname in targets:
        check_weight(getattr(module, pname).detach(), f"{name}.{pname}" if name else pname)
    uses = weight_uses(model, example_input, targets)
    layers = [_Layer(n, m, p, u) for (n, m, p), u in zip(targets, uses)]
    base = train_config or TrainConfig(lr=config.retrain_lr, progress=False, seed=config.seed)
    mac_dense, mac_eff = _report_macs(model, example_input)
    if not mac_dense > 0:
        raise ConfigError(f"{type(model).__name__}: the report counts no MACs for this example input")
    start = 1.0 - mac_eff / mac_dense
    target = config.mac_reduction
    schedule = round_targets(start, target, config.rounds, config.schedule) if target is not None else None
    result = MacBudgetResult(config=config.to_dict(), target=target)
    warned: set[str] = set()
    total_rounds = config.rounds + (config.max_extra_rounds if target is not None else 0)
    for rnd in range(1, total_rounds + 1):
        if rnd > config.rounds and result.met_target:
            break
        t0 = time.perf_counter()
        goal = None if target is None else (schedule[rnd - 1] if rnd <= config.rounds else target)
        ask = goal
        for _ in range(_MAX_CORRECTIONS + 1):
            plan, mags, alive, notes, planner = _plan_round(layers, config, ask, mac_dense, mac_eff)
            _apply(layers, plan, mags, alive)
            _, eff_now = _report_macs(model, example_input)
            achieved = 1.0 - eff_now / mac_dense
            if goal is None or achieved >= goal - 1e-9 or abs(achieved - plan.reduction) < 1e-12:
                break
            # the report disagrees with the MAC model (custom layers): undo and ask for the difference
            for ly, a in zip(layers, alive):
                apply_mask_(ly.module, ly.pname, a, layer_name=ly.name)
            ask = min(ask + (goal - achieved), 1.0 - 1e-9)
        for ly, note in zip(layers, notes):
            if note and ly.name not in warned:
                warned.add(ly.name)
                warnings.warn(f"MAC-budget pruning: layer '{ly.name}' skipped: {note}", stacklevel=2)
                if config.verbose:
                    console.print(f"[yellow]MAC-budget: layer '{ly.name}' skipped ({note})[/]")
        removed = planner.removed_macs(plan.pruned)
        rec = RoundRecord(round=rnd, target=goal, eps0=plan.eps0, reduction_planned=plan.reduction,
                          reduction=achieved, dense_macs=mac_dense, effective_macs=eff_now,
                          sparsity=global_sparsity(model, config.include, config.exclude))
        for i, ly in enumerate(layers):
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
        if val is not None:
            rec.val_metric_pruned = evaluate(model, val, metric, device=base.device)
        _retrain(model, train, val, base, config, rnd, loss_fn, metric)
        if val is not None and train is not None and config.retrain_epochs > 0:
            rec.val_metric_retrained = evaluate(model, val, metric, device=base.device)
        mac_eff = eff_now
        rec.seconds = round(time.perf_counter() - t0, 3)
        result.rounds.append(rec)
        result.reduction, result.sparsity = achieved, rec.sparsity
        result.val_metric = rec.val_metric_retrained if rec.val_metric_retrained is not None else rec.val_metric_pruned
        if config.verbose:
            print_round(rec, console)
        if history_path is not None:
            result.to_json(history_path)
    if target is not None and not result.met_target:
        warnings.warn(f"MAC-budget pruning reached an effective-MAC reduction of {result.reduction:.4f}, short of "
                      f"the target {target:.4f} (tolerance {config.tolerance})", stacklevel=2)
    return result

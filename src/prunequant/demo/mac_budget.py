"""Demo step ``mac-budget``: prune the trained digits CNN to 50% fewer effective MACs, next to uniform-rate
magnitude pruning tuned to the same reduction with the same retraining (docs/mac_budget_pruning.md)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

X = torch.zeros(1, 1, 8, 8)


def run(ctx: Any, mac_reduction: float = 0.5, rounds: int = 3, epochs: int = 2) -> dict[str, Any]:
    """Run on ``ctx.model``; writes history JSON, report JSON and a plot under ``ctx.out``."""
    from ..analysis import report
    from ..api import prune_
    from ..data import digits_loaders
    from ..pruning import MacBudgetConfig
    from ..pruning.mac_budget.handler import round_targets
    from ..pruning.magnitude import apply_magnitude_masks_, sparsity_for_mac_reduction
    from ..training import TrainConfig, Trainer, evaluate
    from ..viz import plot_mac_budget

    ctx.console.rule(f"MAC-budget pruning: {mac_reduction:.0%} fewer effective MACs")
    train, val, test = digits_loaders(batch_size=64, seed=ctx.seed)
    base = TrainConfig(lr=1e-3, progress=False, seed=ctx.seed)
    model = copy.deepcopy(ctx.model)
    res = prune_(model, MacBudgetConfig(mac_reduction=mac_reduction, rounds=rounds, retrain_epochs=epochs),
                 train=train, val=val, train_config=base, example_input=X,
                 history_path=ctx.out / "mac_budget_history.json")
    acc = evaluate(model, test)
    rep = report(model, X)
    ctx.console.table(rep, title="MAC-budget pruning")
    rep.to_json(ctx.out / "mac_budget_report.json")
    plot_mac_budget(res, ctx.out / "mac_budget.png")

    uni = copy.deepcopy(ctx.model)  # baseline: same fraction in every layer, same rounds and retraining
    for rnd, goal in enumerate(round_targets(0.0, mac_reduction, rounds, "geometric"), start=1):
        s, _ = sparsity_for_mac_reduction(uni, goal, X, scope="uniform")
        apply_magnitude_masks_(uni, s, "uniform")
        Trainer(uni, dataclasses.replace(base, epochs=epochs, seed=base.seed + rnd)).fit(train)
    uni_acc = evaluate(uni, test)
    t = rep.total
    ctx.console.print(f"effective MACs {t.effective_macs:,} / {t.macs:,} ({1 - t.effective_macs / t.macs:.2%} "
                      f"removed); test accuracy: dense {ctx.accuracy:.4f}, MAC-budget {acc:.4f}, uniform-rate "
                      f"magnitude {uni_acc:.4f}")
    out = {"mac_reduction": 1 - t.effective_macs / t.macs, "accuracy": acc, "uniform_accuracy": uni_acc,
           "sparsity": res.sparsity, "rounds": len(res.rounds)}
    ctx.results["mac-budget"] = out
    return out

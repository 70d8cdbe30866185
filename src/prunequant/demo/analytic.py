"""Demo step ``analytic``: self-prune the trained digits CNN to 90 % global sparsity with learned thresholds,
next to global magnitude pruning with the same training budget (docs/analytic_pruning.md)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

X = torch.zeros(1, 1, 8, 8)


def run(ctx: Any, sparsity: float = 0.9, epochs: int = 20, finetune_epochs: int = 10) -> dict[str, Any]:
    """Run on ``ctx.model``; writes a report JSON, a plot and the pruned model under ``ctx.out``."""
    import torch.nn.utils.prune as torch_prune

    from ..analysis import report
    from ..api import prune_
    from ..data import digits_loaders
    from ..io import save
    from ..pruning import AnalyticThresholdConfig
    from ..pruning.base import global_sparsity, prunable_modules
    from ..training import TrainConfig, Trainer, evaluate
    from ..viz import plot_analytic_run

    ctx.console.rule(f"analytic-threshold self-pruning to {sparsity:.0%} global sparsity")
    train, val, test = digits_loaders(batch_size=64, seed=ctx.seed)
    base = TrainConfig(lr=1e-3, progress=False, seed=ctx.seed)
    model = copy.deepcopy(ctx.model)
    cfg = AnalyticThresholdConfig(target_sparsity=sparsity, epochs=epochs, finetune_epochs=finetune_epochs)
    res = prune_(model, cfg, train=train, val=val, train_config=base)
    acc = evaluate(model, test)
    rep = report(model, X)
    ctx.console.table(rep, title="analytic pruning")
    rep.to_json(ctx.out / "analytic_report.json")
    plot_analytic_run(res, ctx.out / "analytic_pruning.png")
    save(model, ctx.out / "digits_cnn_analytic.safetensors",
         metadata={"method": "analytic", "target_sparsity": sparsity, "layers": res.layers})

    mag = copy.deepcopy(ctx.model)  # baseline: one global magnitude threshold, same total training epochs
    params = [(m, p) for _, m, p in prunable_modules(mag)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    Trainer(mag, dataclasses.replace(base, epochs=epochs + finetune_epochs)).fit(train)
    for m, p in params:
        torch_prune.remove(m, p)
    mag_acc = evaluate(mag, test)
    ctx.console.print(f"global sparsity {global_sparsity(model):.2%} (controller alone: "
                      f"{res.sparsity_before_snap:.2%}); test accuracy: dense {ctx.accuracy:.4f}, analytic "
                      f"{acc:.4f}, global magnitude {mag_acc:.4f}")
    out = {"sparsity": global_sparsity(model), "sparsity_before_snap": res.sparsity_before_snap, "accuracy": acc,
           "magnitude_global_accuracy": mag_acc, "layers": res.layers}
    ctx.results["analytic"] = out
    return out

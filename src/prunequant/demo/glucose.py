"""Demo step ``glucose``: the two experiments at small, fast settings (numbers differ from the benchmark's)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any


def run(ctx: Any) -> None:
    """Simulated NIR and fermentation experiments (needs the ``[glucose]`` extra); plots under ``ctx.out/glucose``."""
    from ..apps.glucose.data import SpectralAugmentation
    from ..apps.glucose.experiments import FermentationRecipe, SimulatedRecipe, run_fermentation, run_simulated
    from ..apps.glucose.pipeline import CompressSettings, TrainSettings

    ctx.console.rule("glucose: two stacked LSTMs on NIR data (small demo settings)")
    out = ctx.out / "glucose"
    sim = replace(SimulatedRecipe(), n_train=64, n_val=4, n_test=4, train_days=0.25, test_days=0.5, seed=ctx.seed,
                  model={"snv": True, "project": 16, "hidden1": 24, "hidden2": 12},
                  train=TrainSettings(epochs=8, lr=3e-3),
                  compress=CompressSettings(sparsity=0.8, prune_epochs=2, finetune_epochs=2), pls_max_components=30)
    s = run_simulated(sim, out=out, console=ctx.console)
    ferm = replace(FermentationRecipe(), seed=ctx.seed, augmentation=SpectralAugmentation(n=1500, seed=ctx.seed),
                   train=TrainSettings(epochs=10, lr=3e-3),
                   compress=CompressSettings(sparsity=0.7, prune_epochs=2, finetune_epochs=2, exclude=("head",)))
    f = run_fermentation(ferm, out=out, console=ctx.console)
    rows = s["rows"] + f["rows"]
    keep = ("dataset", "model", "rmse", "mard", "clarke_a", "clarke_ab", "size_bytes")
    ctx.results["glucose"] = [{k: r.get(k) for k in keep} for r in rows]
    ctx.console.print(f"glucose plots in {out}/")

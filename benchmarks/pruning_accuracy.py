"""Accuracy vs global sparsity: analytic-threshold self-pruning vs global and gradual (AGP) magnitude pruning.

For every (model, seed) one reference network is trained on digits; every method starts from that same network
and gets the same training budget (``--epochs`` in total, Adam, same lr, same seed and data order):

* ``analytic``: ``prune_epochs`` of joint weight + (α, β) training with the target-sparsity controller, then
  ``epochs − prune_epochs`` of fine-tuning with the hard mask fixed.
* ``magnitude-global``: one-shot ``torch.nn.utils.prune.global_unstructured`` (L1) over the same layers, then
  ``epochs`` of fine-tuning with the mask fixed.
* ``magnitude-agp``: gradual global magnitude pruning (AGP cubic schedule, Zhu & Gupta 2017, via
  ``prunequant.pruning.magnitude.AGPPlugin``) over the first ``prune_epochs``, still training, then the rest of
  the budget with the final mask.

    .venv/bin/python benchmarks/pruning_accuracy.py --quick   # 1 seed, 90 % and 98 %  (< 2 min)
    .venv/bin/python benchmarks/pruning_accuracy.py           # 3 seeds, 80/90/95/98 %, both models

Writes ``<out>/pruning_accuracy.json`` and ``<out>/pruning_accuracy.png``. Last stdout line: one JSON object
``{"benchmark": "pruning_accuracy", "rows": [{"model", "method", "target_sparsity", "sparsity",
"accuracy_mean", "accuracy_std", ...}], ...}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.utils.prune as torch_prune
from rich.console import Console
from rich.progress import Progress

from prunequant import prune_
from prunequant.data import digits_loaders
from prunequant.models.reference import train_reference
from prunequant.pruning import AGPPlugin, AnalyticThresholdConfig, global_sparsity, prunable_modules
from prunequant.training import TrainConfig, Trainer, evaluate

METHODS = ("analytic", "magnitude-global", "magnitude-agp")


def run_analytic(model, target, epochs, prune_epochs, base, loaders) -> dict:
    train, val, test = loaders
    res = prune_(model, AnalyticThresholdConfig(target_sparsity=target, epochs=prune_epochs,
                                                finetune_epochs=epochs - prune_epochs),
                 train=train, val=val, train_config=base)
    return {"accuracy": evaluate(model, test), "sparsity": global_sparsity(model),
            "sparsity_before_snap": res.sparsity_before_snap}


def run_global(model, target, epochs, prune_epochs, base, loaders) -> dict:
    train, val, test = loaders
    params = [(m, p) for _, m, p in prunable_modules(model)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=target)
    Trainer(model, dataclasses.replace(base, epochs=epochs)).fit(train, val)
    for m, p in params:
        torch_prune.remove(m, p)
    return {"accuracy": evaluate(model, test), "sparsity": global_sparsity(model)}


def run_agp(model, target, epochs, prune_epochs, base, loaders) -> dict:
    train, val, test = loaders
    end = prune_epochs * len(train)
    plugin = AGPPlugin(model, final_sparsity=target, end_step=end, start_step=0,
                       frequency=max(1, len(train) // 2), scope="global")
    Trainer(model, dataclasses.replace(base, epochs=epochs), plugins=[plugin]).fit(train, val)
    return {"accuracy": evaluate(model, test), "sparsity": global_sparsity(model)}


RUNNERS = {"analytic": run_analytic, "magnitude-global": run_global, "magnitude-agp": run_agp}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, name in zip(axes[0], models):
        for method in METHODS:
            rs = sorted((r for r in rows if r["model"] == name and r["method"] == method),
                        key=lambda r: r["target_sparsity"])
            ax.errorbar([100 * r["sparsity"] for r in rs], [100 * r["accuracy_mean"] for r in rs],
                        yerr=[100 * r["accuracy_std"] for r in rs], marker="o", capsize=3, label=method)
        ref = next(r["reference_accuracy"] for r in rows if r["model"] == name)
        ax.axhline(100 * ref, color="grey", ls=":", label="dense reference")
        ax.set(title=f"{name} (digits)", xlabel="global sparsity (%)", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, sparsities 0.9 and 0.98 (< 2 min)")
    ap.add_argument("--models", default="digits_cnn,mlp")
    ap.add_argument("--sparsities", default=None, help="comma list (default 0.8,0.9,0.95,0.98)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    ap.add_argument("--epochs", type=int, default=30, help="total training budget per method")
    ap.add_argument("--prune-epochs", type=int, default=20, help="analytic soft phase / AGP ramp length")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    sparsities = [float(s) for s in (args.sparsities or ("0.9,0.98" if args.quick else "0.8,0.9,0.95,0.98"))
                  .split(",")]
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    models = args.models.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    runs: dict[tuple, list[dict]] = {}
    refs: dict[str, list[float]] = {}
    method_seconds = {m: 0.0 for m in METHODS}
    total = len(models) * len(seeds) * len(sparsities) * len(METHODS)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("pruning_accuracy", total=total)
        for name in models:
            for seed in seeds:
                _, ref_acc = train_reference(name, seed=seed)
                refs.setdefault(name, []).append(ref_acc)
                loaders = digits_loaders(seed=seed)
                base = TrainConfig(lr=args.lr, seed=seed, progress=False, log_every_epoch=False)
                for target in sparsities:
                    for method in METHODS:
                        model, _ = train_reference(name, seed=seed)  # fresh copy of the same network
                        ts = time.perf_counter()
                        r = RUNNERS[method](model, target, args.epochs, args.prune_epochs, base, loaders)
                        method_seconds[method] += time.perf_counter() - ts
                        runs.setdefault((name, method, target), []).append(r)
                        bar.update(task, advance=1, description=f"{name} s{seed} {method} {target:.2f}: "
                                                                f"{r['accuracy']:.3f}")
    rows = []
    for (name, method, target), rs in runs.items():
        accs = [r["accuracy"] for r in rs]
        row = {"model": name, "method": method, "target_sparsity": target,
               "sparsity": statistics.fmean(r["sparsity"] for r in rs),
               "accuracy_mean": statistics.fmean(accs),
               "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "accuracies": accs, "reference_accuracy": statistics.fmean(refs[name])}
        if method == "analytic":
            row["sparsity_before_snap"] = [r["sparsity_before_snap"] for r in rs]
        rows.append(row)
    # Goal: analytic >= both magnitude baselines at every sparsity, by >= 1 pt at the highest.
    goals = {}
    for name in models:
        def acc(method, t, name=name):
            return next(r["accuracy_mean"] for r in rows if (r["model"], r["method"], r["target_sparsity"])
                        == (name, method, t))
        margins = {t: min(acc("analytic", t) - acc(m, t) for m in METHODS[1:]) for t in sparsities}
        goals[name] = {"margin_vs_best_magnitude": margins,
                       "analytic_ge_magnitude_everywhere": all(v >= 0 for v in margins.values()),
                       "highest_margin_ge_1pt": margins[max(sparsities)] >= 0.01}
    png = args.out / "pruning_accuracy.png"
    plot(rows, png)
    result = {"benchmark": "pruning_accuracy", "quick": args.quick, "seeds": len(seeds),
              "epochs": args.epochs, "prune_epochs": args.prune_epochs, "lr": args.lr, "rows": rows,
              "goals": goals, "seconds": round(time.perf_counter() - t0, 1),
              "method_seconds": {k: round(v, 1) for k, v in method_seconds.items()}, "plot": str(png)}
    (args.out / "pruning_accuracy.json").write_text(json.dumps(result, indent=2))
    for r in sorted(rows, key=lambda r: (r["model"], r["target_sparsity"], r["method"])):
        console.print(f"{r['model']:11s} {r['target_sparsity']:.2f} {r['method']:17s} sparsity {r['sparsity']:.4f} "
                      f"acc {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

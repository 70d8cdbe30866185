"""MAC-budget pruning vs uniform-rate and global magnitude pruning on the digits CNN, at equal effective-MAC
reduction and equal retrain budget.

For every seed one reference CNN is trained; every method starts from that same model. Each method runs the same
prune -> retrain rounds (geometric schedule of effective-MAC targets, same epochs, lr and data order per round).
MAC-budget finds its per-layer thresholds by allowance bisection; the baselines find their rate by bisection on
the report's effective MACs (uniform: the same fraction in every layer; global: one magnitude threshold).
``one_shot`` columns: one round to the target without any retraining (isolates the per-layer allocation).

    .venv/bin/python benchmarks/mac_budget.py --quick      # 3 seeds, 2 rounds x 2 epochs (< 2 min)
    .venv/bin/python benchmarks/mac_budget.py              # 10 seeds, 3 rounds x 3 epochs

Last stdout line: {"benchmark": "mac_budget", "rows": [{"method", "mac_reduction", "accuracy_mean",
"accuracy_std", ...}], ...}
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from prunequant import prune_
from prunequant.analysis import report
from prunequant.data import digits_loaders
from prunequant.models.reference import train_reference
from prunequant.pruning import MacBudgetConfig
from prunequant.pruning.mac_budget import round_targets
from prunequant.pruning.magnitude import apply_magnitude_masks_, sparsity_for_mac_reduction
from prunequant.training import TrainConfig, Trainer, evaluate

X = torch.zeros(1, 1, 8, 8)
METHODS = ("mac_budget", "uniform", "global")


def mac_reduction(model) -> float:
    t = report(model, X).total
    return 1.0 - t.effective_macs / t.macs


def run_method(method: str, model, target: float, rounds: int, epochs: int, base: TrainConfig, loaders) -> dict:
    """Prune ``model`` (in place) to ``target`` in ``rounds`` rounds with ``epochs`` of retraining each."""
    train, _, test = loaders
    if method == "mac_budget":
        cfg = MacBudgetConfig(mac_reduction=target, rounds=rounds, retrain_epochs=epochs)
        fit = dict(train=train, train_config=base) if epochs else {}  # one-shot: no training data
        prune_(model, cfg, example_input=X, **fit)
    else:
        for rnd, goal in enumerate(round_targets(0.0, target, rounds, "geometric"), start=1):
            s, _ = sparsity_for_mac_reduction(model, goal, X, scope=method)
            apply_magnitude_masks_(model, s, method)
            if epochs:  # identical to MAC-budget's per-round retrain
                Trainer(model, dataclasses.replace(base, epochs=epochs, seed=base.seed + rnd)).fit(train)
    return {"accuracy": evaluate(model, test), "reduction": mac_reduction(model)}


def summarize(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 2 rounds x 2 epochs")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="retrain epochs per round")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reductions", default="0.3,0.5,0.7")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/mac_budget"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (3 if args.quick else 10)
    rounds = args.rounds or (2 if args.quick else 3)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 3)
    targets = [float(r) for r in args.reductions.split(",")]
    t_start = time.perf_counter()

    from rich.progress import Progress

    res: dict[tuple[str, float], dict[str, list[float]]] = {}
    dense_acc = []
    with Progress(transient=True) as bar:
        task = bar.add_task("mac_budget benchmark", total=seeds * len(targets) * len(METHODS) * 2)
        for seed in range(seeds):
            ref, acc = train_reference("digits_cnn", seed=seed)
            dense_acc.append(acc)
            loaders = digits_loaders(batch_size=64, seed=seed)
            base = TrainConfig(lr=args.lr, progress=False, seed=seed)
            for target in targets:
                for method in METHODS:
                    full = run_method(method, copy.deepcopy(ref), target, rounds, epochs, base, loaders)
                    bar.advance(task)
                    shot = run_method(method, copy.deepcopy(ref), target, 1, 0, base, loaders)
                    bar.advance(task)
                    r = res.setdefault((method, target), {"acc": [], "red": [], "shot": []})
                    r["acc"].append(full["accuracy"])
                    r["red"].append(full["reduction"])
                    r["shot"].append(shot["accuracy"])

    dense_mean, dense_std = summarize(dense_acc)
    rows = []
    for (method, target), r in res.items():
        m, s = summarize(r["acc"])
        sm, ss = summarize(r["shot"])
        rows.append({"method": method, "mac_reduction": target, "accuracy_mean": round(m, 4),
                     "accuracy_std": round(s, 4), "accuracy_drop_mean": round(dense_mean - m, 4),
                     "achieved_reduction_mean": round(statistics.fmean(r["red"]), 4),
                     "one_shot_accuracy_mean": round(sm, 4), "one_shot_accuracy_std": round(ss, 4),
                     "accuracy_per_seed": [round(a, 4) for a in r["acc"]]})
    # paired comparison with uniform (same reference model and retraining per seed)
    paired = {}
    for target in targets:
        for other in ("uniform", "global"):
            d = [a - b for a, b in zip(res[("mac_budget", target)]["acc"], res[(other, target)]["acc"])]
            dm, ds = summarize(d)
            paired[f"mac_budget_minus_{other}@{target}"] = {
                "mean": round(dm, 4), "std": round(ds, 4), "wins": sum(x > 0 for x in d),
                "ties": sum(x == 0 for x in d), "losses": sum(x < 0 for x in d)}

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"digits CNN, dense accuracy {dense_mean:.4f} ± {dense_std:.4f} ({seeds} seeds), "
                    f"{rounds} rounds x {epochs} epochs retrain")
    for c in ("method", "MAC red.", "achieved", "accuracy", "drop", "one-shot (no retrain)"):
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in sorted(rows, key=lambda r: (r["mac_reduction"], METHODS.index(r["method"]))):
        t.add_row(r["method"], f"{r['mac_reduction']:.0%}", f"{r['achieved_reduction_mean']:.2%}",
                  f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}", f"{r['accuracy_drop_mean']:+.4f}",
                  f"{r['one_shot_accuracy_mean']:.4f} ± {r['one_shot_accuracy_std']:.4f}")
    Console(width=140).print(t)
    for k, v in paired.items():
        print(f"paired {k}: {v['mean']:+.4f} ± {v['std']:.4f} (wins/ties/losses {v['wins']}/{v['ties']}/"
              f"{v['losses']})")

    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["mac_reduction"])
        xs = [r["mac_reduction"] for r in rs]
        ax[0].errorbar(xs, [r["accuracy_mean"] for r in rs], [r["accuracy_std"] for r in rs], marker="o",
                       capsize=3, label=method)
        ax[1].errorbar(xs, [r["one_shot_accuracy_mean"] for r in rs], [r["one_shot_accuracy_std"] for r in rs],
                       marker="o", capsize=3, label=method)
    for a, title in zip(ax, (f"after {rounds} prune->retrain rounds", "one-shot, no retraining")):
        a.axhline(dense_mean, color="gray", ls="--", lw=1, label="dense")
        a.set_xlabel("effective-MAC reduction")
        a.set_ylabel("test accuracy")
        a.set_title(title)
        a.legend()
    fig.tight_layout()
    fig.savefig(args.out / "mac_budget.png", dpi=120)
    out = {"benchmark": "mac_budget", "model": "digits_cnn", "seeds": seeds, "rounds": rounds,
           "retrain_epochs": epochs, "lr": args.lr, "dense_accuracy_mean": round(dense_mean, 4),
           "dense_accuracy_std": round(dense_std, 4), "rows": rows, "paired": paired,
           "seconds": round(time.perf_counter() - t_start, 1)}
    (args.out / "mac_budget.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Joint pruning + soft mixed-precision QAT vs the two baselines: metric against compressed size.

Models: the digits CNN (accuracy) and the glucose app's two-LSTM model on simulated wearable NIR windows (RMSE in
mg/dL). For every seed one reference model is trained; every method starts from that same model and gets the same
total number of training epochs, the same feature-map bits and the same size target (bytes as
:func:`prunequant.analysis.report` counts them, fp32 bytes / ratio):

* ``joint``: ``JointConfig(target_size_bytes=T, target_abits=A)``: soft phase + hardening + fine-tune;
* ``qat-after-magnitude``: global magnitude pruning to the sparsity that meets T at ``b`` bits, then fixed-bit QAT;
* ``analytic-then-pwlq``: analytic-threshold pruning to that sparsity (+ fine-tune), then PWLQ PTQ at ``b`` bits.

Sizes, bits and sparsity are read from the report of the finalized model (what was really reached, not the target).

    .venv/bin/python benchmarks/joint.py --quick     # digits 3 seeds + glucose 1 seed, short schedules (< 3 min)
    .venv/bin/python benchmarks/joint.py             # 3 seeds each, full schedules

Last stdout line: {"benchmark": "joint", "rows": [{"model", "method", "size_bytes", "compression_ratio",
"avg_wbits", "avg_abits", "sparsity", "metric", "metric_name", "loss_vs_fp32", ...}], "runs": [...],
"summary": {...}} (rows: means over seeds; runs: every seed; loss_vs_fp32: accuracy points lost, or RMSE
increase).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch import nn

from prunequant.analysis import report
from prunequant.api import prune_quantize_
from prunequant.data import digits_loaders
from prunequant.joint import AnalyticPWLQConfig, JointConfig, MagnitudeQATConfig
from prunequant.models.reference import train_reference
from prunequant.training import accuracy, evaluate

X_DIGITS = torch.zeros(1, 1, 8, 8)
METHODS = ("joint", "qat-after-magnitude", "analytic-then-pwlq")


def model_stats(model, example) -> dict:
    """Size, ratio and bit/sparsity averages of the layers with MACs, from the report."""
    rep = report(model, example)
    rows = [r for r in rep.rows if r.macs > 0]
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    return {"size_bytes": rep.total.bytes, "compression_ratio": rep.compression_ratio,
            "avg_wbits": sum(r.weight_bits * r.params for r in rows) / params,
            "avg_abits": sum(r.act_bits * r.macs for r in rows) / macs,
            "sparsity": 1.0 - sum(r.nonzeros for r in rows) / params,
            "bops": sum(r.effective_macs * r.weight_bits * r.act_bits for r in rows)}


@dataclass
class Task:
    """One model + data set: the fp32 model per seed, loaders, loss, metrics and what every method shares."""

    name: str
    fp32: Callable[[int], nn.Module]            # trained reference model for a seed (fresh copy)
    loaders: Callable[[int], tuple]             # (train, val) DataLoaders for a seed
    score: Callable[[nn.Module], float]         # reported test metric
    metric_name: str
    higher_is_better: bool
    example: torch.Tensor
    abits: int
    ratios: list[float]
    epochs: tuple[int, int]
    seeds: int
    loss_fn: Callable = F.cross_entropy
    train_metric: Callable = accuracy
    exclude: tuple[str, ...] | None = None


def digits_task(args) -> Task:
    def fp32(seed):
        return train_reference("digits_cnn", seed=seed)[0]

    def loaders(seed):
        return digits_loaders(batch_size=64, seed=seed)[:2]

    test = digits_loaders(batch_size=256, seed=0)[2]  # the test split does not depend on the seed
    return Task("digits_cnn", fp32, loaders, lambda m: evaluate(m, test), "accuracy", True, X_DIGITS, args.abits,
                args.ratios, (10, 5) if args.quick else (30, 15), args.seeds)


def glucose_task(args) -> Task:
    """The glucose app's two-LSTM model on simulated wearable NIR windows (the app's simulated recipe, scaled
    down: 16/4/8 subjects, half a day each). The PCA-initialised input projection and the 1-output head are left
    in fp32 by every method (the app's own compression does the same)."""
    from prunequant.apps.glucose.metrics import rmse
    from prunequant.apps.glucose.model import GlucoseLSTM
    from prunequant.apps.glucose.pipeline import (
        TrainSettings,
        fit_glucose,
        make_loader,
        neg_rmse,
        predict,
        regression_loss,
    )
    from prunequant.apps.glucose.simulate import SimulatorConfig, simulate_cohort

    sim = SimulatorConfig(days=0.5, wl_step=40.0)
    xtr, ytr, _ = simulate_cohort(range(0, 16), sim, 0).windows(6)
    xva, yva, _ = simulate_cohort(range(16, 20), sim, 0).windows(6)
    xte, yte, _ = simulate_cohort(range(100_000, 100_008), sim, 0).windows(6)
    cache: dict[int, nn.Module] = {}

    def fp32(seed):
        if seed not in cache:
            torch.manual_seed(seed)
            m = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], snv=True, project=24, hidden1=48, hidden2=24)
            fit_glucose(m, xtr, ytr, xva, yva, TrainSettings(epochs=10 if args.quick else 30, lr=3e-3,
                                                             batch_size=128, seed=seed, progress=False))
            cache[seed] = m
        return copy.deepcopy(cache[seed])

    def loaders(seed):
        torch.manual_seed(seed)
        return make_loader(xtr, ytr, 128, shuffle=True), make_loader(xva, yva, 1024)

    y_std = float(np.std(ytr))
    return Task("glucose_lstm", fp32, loaders, lambda m: rmse(yte, predict(m, xte)), "rmse_mgdl", False,
                torch.zeros(1, 6, xtr.shape[-1]), 8, args.glucose_ratios,
                (4, 2) if args.quick else (20, 10), 1 if args.quick else args.glucose_seeds,
                loss_fn=regression_loss("mse", y_std), train_metric=neg_rmse, exclude=("proj", "head"))


def run_method(task: Task, method: str, seed: int, target: float, args) -> dict:
    soft, ft = task.epochs
    model = task.fp32(seed)
    train, val = task.loaders(seed)
    ex = list(task.exclude) if task.exclude else None
    if method == "joint":
        cfg = JointConfig(target_size_bytes=target, target_abits=task.abits, epochs=soft, finetune_epochs=ft,
                          exclude=ex)
    elif method == "qat-after-magnitude":
        cfg = MagnitudeQATConfig(target_size_bytes=target, wbits=args.wbits, abits=task.abits, epochs=soft + ft,
                                 exclude=ex)
    else:
        cfg = AnalyticPWLQConfig(target_size_bytes=target, wbits=args.wbits, abits=task.abits, prune_epochs=soft,
                                 finetune_epochs=ft, exclude=ex)
    torch.manual_seed(seed)
    prune_quantize_(model, cfg, train=train, val=val, loss_fn=task.loss_fn, metric=task.train_metric)
    return {**model_stats(model, task.example), "metric": task.score(model), "metric_name": task.metric_name}


def _loss_vs_fp32(task: Task, fp32: float, metric: float) -> float:
    """How much worse than fp32: accuracy points lost, or RMSE increase (mg/dL)."""
    return (fp32 - metric) * 100 if task.higher_is_better else metric - fp32


def _mean_rows(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["method"], r["target_ratio"]), []).append(r)
    rows = []
    for (model, method, ratio), rs in groups.items():
        row = {"model": model, "method": method, "target_ratio": ratio, "seeds": len(rs)}
        for k in ("size_bytes", "compression_ratio", "avg_wbits", "avg_abits", "sparsity", "bops", "metric",
                  "loss_vs_fp32"):
            row[k] = statistics.fmean(r[k] for r in rs)
        row["metric_std"] = statistics.stdev([r["metric"] for r in rs]) if len(rs) > 1 else 0.0
        row["metric_name"] = rs[0]["metric_name"]
        rows.append(row)
    return rows


def _summary(rows: list[dict]) -> dict:
    """Goal check on the digits CNN (largest mean compression with <= 1 pt mean accuracy loss, per method) and
    joint minus each baseline at every target (metric and size, both models)."""
    out: dict = {}
    for method in METHODS:
        ok = [r for r in rows if r["model"] == "digits_cnn" and r["method"] == method and r["loss_vs_fp32"] <= 1.0]
        out[f"digits_{method}_best_ratio_within_1pt"] = max((r["compression_ratio"] for r in ok), default=None)
    comp = []
    for r in rows:
        if r["method"] != "joint":
            continue
        for b in rows:
            if b["model"] == r["model"] and b["method"] in METHODS[1:] and b["target_ratio"] == r["target_ratio"]:
                comp.append({"model": r["model"], "target_ratio": r["target_ratio"], "baseline": b["method"],
                             "joint_metric": r["metric"], "baseline_metric": b["metric"],
                             "joint_size": r["size_bytes"], "baseline_size": b["size_bytes"],
                             "joint_better": round((r["metric"] - b["metric"]) * (1 if r["metric_name"] ==
                                                                                  "accuracy" else -1), 6) > 0})
    out["joint_vs_baselines"] = comp
    best = out["digits_joint_best_ratio_within_1pt"]
    out["goal_30x_within_1pt"] = bool(best is not None and best >= 30.0)
    return out


def _plot(task: Task, rows: list[dict], fp32: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, "os^"):
        pts = sorted((r["size_bytes"], r["metric"], r["metric_std"]) for r in rows if r["method"] == method)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker=marker,
                        capsize=3, label=method)
    ax.axhline(fp32["metric"], color="gray", ls="--", lw=1, label=f"fp32 ({fp32['size_bytes']:,.0f} B)")
    if task.higher_is_better:
        ax.axhline(fp32["metric"] - 0.01, color="gray", ls=":", lw=1, label="fp32 - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("compressed size (bytes, report)")
    ax.set_ylabel(f"test {task.metric_name} (mean over {task.seeds} seed(s))")
    ax.set_title(f"{task.name}: {task.metric_name} vs size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(task: Task, rows: list[dict], args) -> Table:
    t = Table(title=f"{task.name}, {task.seeds} seed(s), feature maps {task.abits} bits, baselines {args.wbits}-bit "
                    f"weights, {task.epochs[0]}+{task.epochs[1]} epochs")
    loss_col = "drop pts" if task.higher_is_better else "Δ vs fp32"
    for c in ("method", "target", "size B", "ratio", "w bits", "a bits", "sparsity", task.metric_name, "± std",
              loss_col):
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in sorted(rows, key=lambda r: (r["target_ratio"], r["method"])):
        t.add_row(r["method"], f"{r['target_ratio']:g}x", f"{r['size_bytes']:,.0f}", f"{r['compression_ratio']:.1f}",
                  f"{r['avg_wbits']:.2f}", f"{r['avg_abits']:.2f}", f"{r['sparsity']:.1%}", f"{r['metric']:.4f}",
                  f"{r['metric_std']:.4f}", f"{r['loss_vs_fp32']:.2f}")
    return t


def run_task(task: Task, args, bar, progress_task) -> list[dict]:
    runs = []
    for seed in range(task.seeds):
        model = task.fp32(seed)
        fp32 = {**model_stats(model, task.example), "metric": task.score(model), "metric_name": task.metric_name}
        runs.append({"model": task.name, "method": "fp32", "seed": seed, "target_ratio": 1.0, "loss_vs_fp32": 0.0,
                     **fp32})
        bar.advance(progress_task)
        for ratio in task.ratios:
            target = fp32["size_bytes"] / ratio
            for method in METHODS:
                bar.update(progress_task, description=f"{task.name} seed {seed} {ratio:g}x {method}")
                t = time.perf_counter()
                res = run_method(task, method, seed, target, args)
                runs.append({"model": task.name, "method": method, "seed": seed, "target_ratio": ratio,
                             "target_bytes": target, "fp32_metric": fp32["metric"],
                             "loss_vs_fp32": _loss_vs_fp32(task, fp32["metric"], res["metric"]),
                             "seconds": time.perf_counter() - t, **res})
                bar.advance(progress_task)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short schedules; glucose: 1 seed (< 3 min)")
    ap.add_argument("--seeds", type=int, default=3, help="digits seeds")
    ap.add_argument("--glucose-seeds", type=int, default=3, help="glucose seeds (--quick: 1)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[16.0, 24.0, 32.0], help="digits targets")
    ap.add_argument("--glucose-ratios", type=float, nargs="+", default=[6.0, 8.0, 10.0], help="glucose targets")
    ap.add_argument("--models", nargs="+", default=["digits", "glucose"], choices=["digits", "glucose"])
    ap.add_argument("--abits", type=int, default=4, help="digits feature-map bits (joint: target average)")
    ap.add_argument("--wbits", type=int, default=4, help="baselines' weight bits")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/joint"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # 2 shared cores: more threads only contend
    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [digits_task(args)] if "digits" in args.models else []
    if "glucose" in args.models:
        tasks.append(glucose_task(args))
    runs: list[dict] = []
    total = sum(t.seeds * (1 + len(t.ratios) * len(METHODS)) for t in tasks)
    with Progress(console=console, transient=True) as bar:
        progress_task = bar.add_task("joint benchmark", total=total)
        for task in tasks:
            runs += run_task(task, args, bar, progress_task)
    rows = _mean_rows(runs)
    for task in tasks:
        trows = [r for r in rows if r["model"] == task.name]
        fp32 = next(r for r in trows if r["method"] == "fp32")
        _plot(task, [r for r in trows if r["method"] != "fp32"], fp32, args.out / f"{task.name}_metric_vs_size.png")
        Console(width=150).print(_table(task, trows, args))
    result = {"benchmark": "joint", "quick": args.quick, "seeds": {t.name: t.seeds for t in tasks},
              "epochs": {t.name: list(t.epochs) for t in tasks}, "abits": {t.name: t.abits for t in tasks},
              "baseline_wbits": args.wbits, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
              "runs": runs, "summary": _summary(rows)}
    (args.out / ("joint_quick.json" if args.quick else "joint.json")).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

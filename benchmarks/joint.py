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
                                                     # + Fashion-MNIST ResNet/MobileNet-v2, 1 seed, 64x only
    .venv/bin/python benchmarks/joint.py             # 3 seeds each, full schedules, Fashion-MNIST at 16/32/64x
    .venv/bin/python benchmarks/joint.py --models fashion_resnet fashion_mobilenetv2 --select-candidates

Fashion-MNIST rows (dataset "fashion-mnist") add the method ``uniform-2bit`` (every layer 2-bit weights, magnitude
pruning only where the size target needs it), ``bops_ratio`` (fp32 BOPs = MACs x 32 x 32 over the method's
effective-MAC BOPs) and a plot of the joint per-layer allocation next to each layer's one-at-a-time 2-bit
sensitivity (``<model>_allocation.png``). Joint candidate bits can be chosen on a validation split (the first
half of the test images; the reported test metric uses the disjoint second half).

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
METHODS = ("joint", "qat-after-magnitude", "analytic-then-pwlq", "uniform-2bit")
BASELINES = METHODS[1:]


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
            "bops": sum(r.effective_macs * r.weight_bits * r.act_bits for r in rows),
            "bops_fp32": sum(r.macs * 32 * 32 for r in rows)}


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
    dataset: str = "digits"
    methods: tuple[str, ...] = METHODS[:3]
    joint_overrides: dict | None = None     # JointConfig fields chosen on the validation split
    val_score: Callable | None = None       # metric on the validation split (candidate selection only)
    sensitivity: Callable | None = None     # per-layer sensitivity for the allocation plot


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
                loss_fn=regression_loss("mse", y_std), train_metric=neg_rmse, exclude=("proj", "head"),
                dataset="simulated")


def fashion_task(args, name: str) -> Task:
    """A Fashion-MNIST reference model (ResNet-style or MobileNet-v2-style, >= 1M parameters) from
    :func:`prunequant.models.fashion.train_fashion_reference` (cached by seed). Compression training uses a seeded
    subset of the 60k training images; the 10k test images are split in two disjoint halves: the first half is
    the validation split (candidate-bit selection only), the second half the reported test split."""
    from prunequant.data.fashion_mnist import fashion_mnist
    from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference

    ds = fashion_mnist()
    n_train, n_val, n_test = (2000, 1000, 2000) if args.quick else (12000, 5000, 5000)
    xval, yval = ds.x_test[:n_val], ds.y_test[:n_val]
    xte, yte = ds.x_test[5000:5000 + n_test], ds.y_test[5000:5000 + n_test]
    schedule = "quick" if args.quick else args.fashion_schedule
    cache: dict[int, nn.Module] = {}

    def fp32(seed):
        if seed not in cache:
            cache[seed] = train_fashion_reference(name, seed=seed, schedule=schedule, data=ds, threads=None)[0]
        return copy.deepcopy(cache[seed])

    def loaders(seed):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds.y_train), generator=g)[:n_train]
        train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ds.x_train[idx], ds.y_train[idx]),
                                            batch_size=64, shuffle=True, generator=g)
        val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xval[:500], yval[:500]), batch_size=500)
        return train, val

    def sensitivity(model):
        return layer_sensitivity(model, lambda m: evaluate_accuracy(m, xval[:500], yval[:500]))

    return Task(name.removeprefix("fashion_"), fp32, loaders, lambda m: evaluate_accuracy(m, xte, yte), "accuracy",
                True, torch.zeros(1, 1, 28, 28), args.abits, [max(args.fashion_ratios)] if args.quick else
                args.fashion_ratios,
                (2, 1) if args.quick else (args.fashion_epochs, args.fashion_epochs // 2),
                1 if args.quick else args.fashion_seeds, dataset="fashion-mnist", methods=METHODS,
                val_score=lambda m: evaluate_accuracy(m, xval, yval), sensitivity=sensitivity)


@torch.no_grad()
def layer_sensitivity(model: nn.Module, score: Callable[[nn.Module], float], bits: int = 2) -> dict[str, float]:
    """Accuracy points lost when one layer alone has its weights rounded to ``bits``-bit per-channel symmetric
    uniform levels (the others fp32): the classic one-at-a-time sensitivity scan (as AIMET/NNCF report it)."""
    from prunequant.pruning.base import prunable_modules

    base = score(model)
    out = {}
    qmax = 2 ** (bits - 1) - 1
    for name, module, pname in prunable_modules(model):
        w = getattr(module, pname)
        saved = w.detach().clone()
        flat = saved.reshape(saved.shape[0], -1)
        scale = flat.abs().amax(1, keepdim=True).clamp_min(1e-12) / qmax
        w.data.copy_((torch.round(flat / scale).clamp(-qmax, qmax) * scale).reshape(saved.shape))
        out[f"{name}.{pname}"] = (base - score(model)) * 100
        w.data.copy_(saved)
    return out


def select_candidates(task: Task, args) -> dict:
    """Choose the joint candidate bit sets on the validation split only (seed 0, the highest ratio): each entry of
    CANDIDATE_SETS is run once and the best validation accuracy wins. The test split is never looked at."""
    fp = task.fp32(0)
    target = model_stats(fp, task.example)["size_bytes"] / max(task.ratios)
    best, scores = None, {}
    for key, overrides in CANDIDATE_SETS.items():
        res = run_method(task, "joint", 0, target, args, overrides=overrides, score=task.val_score)
        scores[key] = res["metric"]
        if best is None or res["metric"] > scores[best]:
            best = key
    return {"chosen": best, "val_scores": scores, "overrides": CANDIDATE_SETS[best]}


CANDIDATE_SETS = {
    "w0-2-3-4-8/a4-6-8": {"weight_bits": (0, 2, 3, 4, 8), "act_bits": (4, 6, 8)},
    "w2-3-4-6-8/a2-3-4-6-8": {"weight_bits": (2, 3, 4, 6, 8), "act_bits": (2, 3, 4, 6, 8)},
}


def run_method(task: Task, method: str, seed: int, target: float, args, overrides: dict | None = None,
               score: Callable | None = None) -> dict:
    soft, ft = task.epochs
    model = task.fp32(seed)
    train, val = task.loaders(seed)
    ex = list(task.exclude) if task.exclude else None
    if method == "joint":
        extra = dict(overrides if overrides is not None else (task.joint_overrides or {}))
        cfg = JointConfig(target_size_bytes=target, target_abits=task.abits, epochs=soft, finetune_epochs=ft,
                          exclude=ex, **extra)
    elif method in ("qat-after-magnitude", "uniform-2bit"):
        wbits = 2 if method == "uniform-2bit" else args.wbits
        cfg = MagnitudeQATConfig(target_size_bytes=target, wbits=wbits, abits=task.abits, epochs=soft + ft,
                                 exclude=ex)
    else:
        cfg = AnalyticPWLQConfig(target_size_bytes=target, wbits=args.wbits, abits=task.abits, prune_epochs=soft,
                                 finetune_epochs=ft, exclude=ex)
    torch.manual_seed(seed)
    result = prune_quantize_(model, cfg, train=train, val=val, loss_fn=task.loss_fn, metric=task.train_metric)
    out = {**model_stats(model, task.example), "metric": (score or task.score)(model),
           "metric_name": task.metric_name}
    if method == "joint" and getattr(result, "table", None):
        out["allocation"] = [{k: r[k] for k in ("layer", "params", "sparsity", "wbits", "abits")}
                             for r in result.table]
    return out


def _loss_vs_fp32(task: Task, fp32: float, metric: float) -> float:
    """How much worse than fp32: accuracy points lost, or RMSE increase (mg/dL)."""
    return (fp32 - metric) * 100 if task.higher_is_better else metric - fp32


def _mean_rows(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["model"], r["method"], r["target_ratio"]), []).append(r)
    rows = []
    for (dataset, model, method, ratio), rs in groups.items():
        row = {"dataset": dataset, "model": model, "method": method, "target_ratio": ratio, "seeds": len(rs)}
        for k in ("size_bytes", "compression_ratio", "bops_ratio", "avg_wbits", "avg_abits", "sparsity", "bops",
                  "metric", "loss_vs_fp32"):
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
            if b["model"] == r["model"] and b["method"] in BASELINES and b["target_ratio"] == r["target_ratio"]:
                spread = max(r["metric_std"], b["metric_std"])
                comp.append({"dataset": r["dataset"], "model": r["model"], "target_ratio": r["target_ratio"],
                             "baseline": b["method"], "joint_metric": r["metric"], "baseline_metric": b["metric"],
                             "seed_spread": spread,
                             "joint_ahead_beyond_spread": (r["metric"] - b["metric"]) > spread
                             if r["metric_name"] == "accuracy" else (b["metric"] - r["metric"]) > spread,
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
    for method, marker in zip(task.methods, "os^v"):
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


def _plot_allocation(task: Task, run: dict, sens: dict[str, float], path: Path) -> None:
    """The learned per-layer allocation (sparsity, weight bits, feature-map bits) of one joint run next to each
    layer's one-at-a-time 2-bit sensitivity."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    alloc = run["allocation"]
    names = [a["layer"].removesuffix(".weight") for a in alloc]
    x = np.arange(len(alloc))
    fig = Figure(figsize=(max(8, 0.35 * len(alloc)), 7))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].bar(x, [sens.get(a["layer"], np.nan) for a in alloc], color="tab:red")
    axes[0].set_ylabel("sensitivity\n(pts lost, 2-bit alone)")
    axes[1].bar(x, [a["sparsity"] for a in alloc], color="tab:gray")
    axes[1].set_ylabel("sparsity")
    axes[2].plot(x, [a["wbits"] for a in alloc], "o-", label="weight bits")
    axes[2].plot(x, [a["abits"] for a in alloc], "s--", label="feature-map bits")
    axes[2].set_ylabel("bits")
    axes[2].legend(fontsize=8)
    axes[2].set_xticks(x, names, rotation=90, fontsize=6)
    axes[0].set_title(f"{task.dataset} {task.name}: joint allocation at {run['target_ratio']:g}x "
                      f"(seed {run['seed']}) vs layer sensitivity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_task(task: Task, args, bar, progress_task) -> list[dict]:
    runs = []
    for seed in range(task.seeds):
        model = task.fp32(seed)
        fp32 = {**model_stats(model, task.example), "metric": task.score(model), "metric_name": task.metric_name}
        runs.append({"dataset": task.dataset, "model": task.name, "method": "fp32", "seed": seed, "target_ratio": 1.0,
                     "loss_vs_fp32": 0.0, "bops_ratio": 1.0, **fp32})
        bar.advance(progress_task)
        for ratio in task.ratios:
            target = fp32["size_bytes"] / ratio
            for method in task.methods:
                bar.update(progress_task, description=f"{task.name} seed {seed} {ratio:g}x {method}")
                t = time.perf_counter()
                res = run_method(task, method, seed, target, args)
                res["bops_ratio"] = fp32["bops"] / res["bops"] if res["bops"] else float("inf")
                runs.append({"dataset": task.dataset, "model": task.name, "method": method, "seed": seed,
                             "target_ratio": ratio, "target_bytes": target, "fp32_metric": fp32["metric"],
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
    ap.add_argument("--models", nargs="+", default=["digits", "glucose", "fashion_resnet", "fashion_mobilenetv2"],
                    choices=["digits", "glucose", "fashion_resnet", "fashion_mobilenetv2"])
    ap.add_argument("--fashion-ratios", type=float, nargs="+", default=[16.0, 32.0, 64.0])
    ap.add_argument("--fashion-seeds", type=int, default=3, help="Fashion-MNIST seeds (--quick: 1)")
    ap.add_argument("--fashion-epochs", type=int, default=4, help="Fashion-MNIST soft epochs (fine-tune: half)")
    ap.add_argument("--fashion-schedule", default="quick", choices=["quick", "full"],
                    help="schedule of the Fashion-MNIST reference models (see models.fashion.SCHEDULES)")
    ap.add_argument("--select-candidates", action="store_true",
                    help="choose the joint candidate bit sets on the Fashion-MNIST validation split first")
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
    selection = {}
    for name in ("fashion_resnet", "fashion_mobilenetv2"):
        if name in args.models:
            try:
                task = fashion_task(args, name)
            except Exception as e:  # data absent: say so, keep the other rows
                console.print(f"[yellow]skipping {name}: {e}")
                continue
            if args.select_candidates:
                selection[task.name] = select_candidates(task, args)
                task.joint_overrides = selection[task.name]["overrides"]
            tasks.append(task)
    runs: list[dict] = []
    total = sum(t.seeds * (1 + len(t.ratios) * len(t.methods)) for t in tasks)
    with Progress(console=console, transient=True) as bar:
        progress_task = bar.add_task("joint benchmark", total=total)
        for task in tasks:
            runs += run_task(task, args, bar, progress_task)
    rows = _mean_rows(runs)
    for task in tasks:
        trows = [r for r in rows if r["model"] == task.name]
        fp32 = next(r for r in trows if r["method"] == "fp32")
        if task.sensitivity is not None:
            top = max(task.ratios)
            run = next((r for r in runs if r["model"] == task.name and r["method"] == "joint"
                        and r["target_ratio"] == top and r.get("allocation")), None)
            if run is not None:
                sens = task.sensitivity(task.fp32(run["seed"]))
                run["sensitivity"] = sens
                _plot_allocation(task, run, sens, args.out / f"{task.name}_allocation.png")
        _plot(task, [r for r in trows if r["method"] != "fp32"], fp32, args.out / f"{task.name}_metric_vs_size.png")
        Console(width=150).print(_table(task, trows, args))
    result = {"benchmark": "joint", "quick": args.quick, "seeds": {t.name: t.seeds for t in tasks},
              "epochs": {t.name: list(t.epochs) for t in tasks}, "abits": {t.name: t.abits for t in tasks},
              "baseline_wbits": args.wbits, "seconds": round(time.perf_counter() - t0, 1),
              "candidate_selection": selection, "rows": rows,
              "runs": runs, "summary": _summary(rows)}
    (args.out / ("joint_quick.json" if args.quick else "joint.json")).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

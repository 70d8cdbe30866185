"""Joint pruning + soft mixed-precision QAT vs the two baselines, accuracy against compressed size.

For every seed one reference model is trained; every method starts from that same model, gets the same total
number of training epochs, the same feature-map bits (``--abits``) and the same size target (bytes as
:func:`prunequant.analysis.report` counts them, fp32 bytes / ratio):

* ``joint``: ``JointConfig(target_size_bytes=T, target_abits=A)``: soft phase + hardening + fine-tune;
* ``qat-after-magnitude``: global magnitude pruning to the sparsity that meets T at ``b`` bits, then fixed-bit QAT;
* ``analytic-then-pwlq``: analytic-threshold pruning to that sparsity (+ fine-tune), then PWLQ PTQ at ``b`` bits.

Sizes, bits and sparsity are read from the report of the finalized model (what was really reached, not the target).

    .venv/bin/python benchmarks/joint.py --quick     # 3 seeds, short schedules (< 3 min)
    .venv/bin/python benchmarks/joint.py             # 3 seeds, full schedules

Last stdout line: {"benchmark": "joint", "rows": [{"model", "method", "size_bytes", "compression_ratio",
"avg_wbits", "avg_abits", "sparsity", "metric", "metric_name", ...}], "runs": [...], "summary": {...}}
(rows: means over seeds; runs: every seed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from prunequant.analysis import report
from prunequant.api import prune_quantize_
from prunequant.data import digits_loaders
from prunequant.joint import AnalyticPWLQConfig, JointConfig, MagnitudeQATConfig
from prunequant.models import train_reference
from prunequant.training import evaluate

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


def run_digits(method: str, seed: int, target: float, args, epochs: tuple[int, int]) -> dict:
    soft, ft = epochs
    model, _ = train_reference("digits_cnn", seed=seed)
    train, val, test = digits_loaders(batch_size=64, seed=seed)
    if method == "joint":
        cfg = JointConfig(target_size_bytes=target, target_abits=args.abits, epochs=soft, finetune_epochs=ft,
                          verbose=False)
    elif method == "qat-after-magnitude":
        cfg = MagnitudeQATConfig(target_size_bytes=target, wbits=args.wbits, abits=args.abits, epochs=soft + ft)
    else:
        cfg = AnalyticPWLQConfig(target_size_bytes=target, wbits=args.wbits, abits=args.abits, prune_epochs=soft,
                                 finetune_epochs=ft)
    torch.manual_seed(seed)
    prune_quantize_(model, cfg, train=train, val=val)
    return {**model_stats(model, X_DIGITS), "metric": evaluate(model, test), "metric_name": "accuracy"}


def _mean_rows(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["method"], r["target_ratio"]), []).append(r)
    rows = []
    for (model, method, ratio), rs in groups.items():
        row = {"model": model, "method": method, "target_ratio": ratio, "seeds": len(rs)}
        for k in ("size_bytes", "compression_ratio", "avg_wbits", "avg_abits", "sparsity", "bops", "metric"):
            row[k] = statistics.fmean(r[k] for r in rs)
        row["metric_std"] = statistics.stdev([r["metric"] for r in rs]) if len(rs) > 1 else 0.0
        row["metric_drop_pts"] = statistics.fmean(r["fp32_metric"] - r["metric"] for r in rs) * 100
        row["metric_name"] = rs[0]["metric_name"]
        rows.append(row)
    return rows


def _summary(rows: list[dict]) -> dict:
    """Goal check: largest mean compression with <= 1 pt mean accuracy loss, per method; joint vs baselines."""
    out: dict = {}
    for method in METHODS:
        ok = [r for r in rows if r["method"] == method and r["metric_drop_pts"] <= 1.0]
        out[f"{method}_best_ratio_within_1pt"] = max((r["compression_ratio"] for r in ok), default=None)
    wins = []
    for r in rows:
        if r["method"] == "joint":
            for b in rows:
                if b["method"] in METHODS[1:] and b["target_ratio"] == r["target_ratio"]:
                    wins.append({"target_ratio": r["target_ratio"], "baseline": b["method"],
                                 "joint_metric_minus_baseline": r["metric"] - b["metric"],
                                 "joint_size_minus_baseline": r["size_bytes"] - b["size_bytes"]})
    out["joint_vs_baselines"] = wins
    best = out["joint_best_ratio_within_1pt"]
    out["goal_30x_within_1pt"] = bool(best is not None and best >= 30.0)
    return out


def _plot(rows: list[dict], fp32: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, "os^"):
        pts = sorted((r["size_bytes"], r["metric"], r["metric_std"]) for r in rows if r["method"] == method)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker=marker,
                        capsize=3, label=method)
    ax.axhline(fp32["metric"], color="gray", ls="--", lw=1, label=f"fp32 ({fp32['size_bytes']:,} B)")
    ax.axhline(fp32["metric"] - 0.01, color="gray", ls=":", lw=1, label="fp32 - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("compressed size (bytes, report)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("digits CNN: accuracy vs size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short schedules (< 3 min)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ratios", type=float, nargs="+", default=[16.0, 24.0, 32.0])
    ap.add_argument("--abits", type=int, default=4, help="feature-map bits (joint: target average)")
    ap.add_argument("--wbits", type=int, default=4, help="baselines' weight bits")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/joint"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # 2 shared cores: more threads only contend
    epochs = (12, 6) if args.quick else (20, 10)
    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs: list[dict] = []
    fp32_rows = []
    total = args.seeds * (1 + len(args.ratios) * len(METHODS))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("joint benchmark", total=total)
        for seed in range(args.seeds):
            model, _ = train_reference("digits_cnn", seed=seed)
            _, _, test = digits_loaders(batch_size=64, seed=seed)
            fp32 = {**model_stats(model, X_DIGITS), "metric": evaluate(model, test), "metric_name": "accuracy"}
            fp32_rows.append(fp32)
            runs.append({"model": "digits_cnn", "method": "fp32", "seed": seed, "target_ratio": 1.0,
                         "fp32_metric": fp32["metric"], **fp32})
            bar.advance(task)
            for ratio in args.ratios:
                target = fp32["size_bytes"] / ratio
                for method in METHODS:
                    bar.update(task, description=f"seed {seed} {ratio:g}x {method}")
                    t = time.perf_counter()
                    res = run_digits(method, seed, target, args, epochs)
                    runs.append({"model": "digits_cnn", "method": method, "seed": seed, "target_ratio": ratio,
                                 "target_bytes": target, "fp32_metric": fp32["metric"], "seconds":
                                 time.perf_counter() - t, **res})
                    bar.advance(task)
    rows = _mean_rows(runs)
    summary = _summary(rows)
    fp32_mean = next(r for r in rows if r["method"] == "fp32")
    _plot([r for r in rows if r["method"] != "fp32"], fp32_mean, args.out / "digits_accuracy_vs_size.png")
    table = Table(title=f"digits CNN, {args.seeds} seeds, feature maps {args.abits} bits, baselines {args.wbits}-bit "
                        f"weights, {'quick' if args.quick else 'full'} schedule {epochs[0]}+{epochs[1]} epochs")
    for c in ("method", "target", "size B", "ratio", "w bits", "a bits", "sparsity", "accuracy", "± std", "drop pts"):
        table.add_column(c, justify="left" if c == "method" else "right")
    for r in sorted(rows, key=lambda r: (r["target_ratio"], r["method"])):
        table.add_row(r["method"], f"{r['target_ratio']:g}x", f"{r['size_bytes']:,.0f}", f"{r['compression_ratio']:.1f}",
                      f"{r['avg_wbits']:.2f}", f"{r['avg_abits']:.2f}", f"{r['sparsity']:.1%}", f"{r['metric']:.4f}",
                      f"{r['metric_std']:.4f}", f"{r['metric_drop_pts']:.2f}")
    Console(width=140).print(table)
    result = {"benchmark": "joint", "quick": args.quick, "seeds": args.seeds, "epochs": list(epochs),
              "abits": args.abits, "baseline_wbits": args.wbits, "seconds": round(time.perf_counter() - t0, 1),
              "rows": rows, "runs": runs, "summary": summary}
    (args.out / ("joint_quick.json" if args.quick else "joint.json")).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

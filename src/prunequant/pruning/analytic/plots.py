"""Figures for an analytic-pruning run: training curves (sparsity vs setpoint, λ, accuracy) and the per-layer
sparsity the thresholds learned."""
from __future__ import annotations

from pathlib import Path

from .handler import AnalyticPruningResult


def plot_analytic_run(result: AnalyticPruningResult, path: str | Path) -> Path:
    """Write a two-panel PNG for ``result`` (from ``prune_`` with training data) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    prune = [h for h in result.history if h.get("phase") == "prune"]
    ft = [h for h in result.history if h.get("phase") == "finetune"]
    ep = [h["epoch"] for h in prune]
    if prune:
        ax1.plot(ep, [100 * h["sparsity"] for h in prune], "o-", label="hard sparsity")
        if "setpoint" in prune[0]:
            ax1.plot(ep, [100 * h["setpoint"] for h in prune], "--", label="setpoint")
        acc_key = next((k for k in prune[0] if k.startswith("val_")), None)
        if acc_key:
            n = len(prune)
            ax1.plot(ep + [n + h["epoch"] for h in ft], [100 * h[acc_key] for h in prune + ft], "s-",
                     ms=3, label=f"{acc_key} (soft, then fine-tune)")
        ax1b = ax1.twinx()
        ax1b.plot(ep, [h["lambda"] for h in prune], color="grey", alpha=0.6, label="λ")
        ax1b.set_ylabel("λ (penalty weight)")
    ax1.set(xlabel="epoch", ylabel="%", title="self-pruning run")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.grid(alpha=0.3)
    names = [r["layer"] for r in result.layers]
    ax2.barh(names, [100 * r["sparsity"] for r in result.layers])
    for i, r in enumerate(result.layers):
        ax2.text(1, i, f"β/σ={r['beta_over_std']:.2f}  kept {r['kept']}/{r['params']}", va="center", fontsize=8)
    ax2.set(xlabel="sparsity (%)", title="learned per-layer sparsity", xlim=(0, 100))
    ax2.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Figures for an analytic-pruning run: training curves (sparsity vs setpoint, λ, accuracy) and the per-layer
sparsity the thresholds learned."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._canvas import new_figure, save_figure

__all__ = ["plot_analytic_run"]


def plot_analytic_run(result: Any, path: str | Path) -> Path:
    """Write a two-panel PNG for an analytic-pruning result and return its path.

    Args:
        result: the ``AnalyticPruningResult`` of ``prune_(model, AnalyticThresholdConfig(...), train=...)``
            (uses ``.history``: per-epoch dicts with ``phase``/``epoch``/``sparsity``/``lambda``, and ``.layers``).
        path: PNG file to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig = new_figure((11, 4))
    ax1, ax2 = fig.subplots(1, 2)
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
        if "lambda" in prune[0]:
            ax1b = ax1.twinx()
            ax1b.plot(ep, [h["lambda"] for h in prune], color="grey", alpha=0.6, label="λ")
            ax1b.set_ylabel("λ (penalty weight)")
    ax1.set(xlabel="epoch", ylabel="%", title="self-pruning run")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.grid(alpha=0.3)
    layers = list(result.layers)
    ax2.barh([r["layer"] for r in layers], [100 * r["sparsity"] for r in layers])
    for i, r in enumerate(layers):
        extra = f"β/σ={r['beta_over_std']:.2f}  " if "beta_over_std" in r else ""
        kept = f"kept {r['kept']}/{r['params']}" if "kept" in r and "params" in r else ""
        ax2.text(1, i, extra + kept, va="center", fontsize=8)
    ax2.set(xlabel="sparsity (%)", title="learned per-layer sparsity", xlim=(0, 100))
    ax2.invert_yaxis()
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)

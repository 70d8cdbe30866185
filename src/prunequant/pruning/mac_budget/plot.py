"""Plot of a MAC-budget run: per-layer pruned fraction after each round next to each layer's MAC share."""
from __future__ import annotations

from pathlib import Path

from .history import MacBudgetResult


def plot_history(result: MacBudgetResult, path: str | Path) -> Path:
    """Grouped bars: cumulative pruned fraction per layer and round, with the layer's share of dense MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not result.rounds:
        raise ValueError("the MAC-budget result has no rounds to plot")
    layers = [ly.layer for ly in result.rounds[0].layers]
    x = np.arange(len(layers))
    width = 0.8 / (len(result.rounds) + 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(layers) + 2), 4))
    total = sum(ly.macs for ly in result.rounds[0].layers) or 1.0
    ax.bar(x, [ly.macs / total for ly in result.rounds[0].layers], width, color="lightgray", label="MAC share")
    for i, rec in enumerate(result.rounds, start=1):
        ax.bar(x + i * width, [ly.pruned_fraction for ly in rec.layers], width,
               label=f"round {rec.round}: {rec.reduction:.0%} MACs removed")
    ax.set_xticks(x + width * len(result.rounds) / 2, layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1)
    ax.set_title("MAC-budget pruning: pruned fraction per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

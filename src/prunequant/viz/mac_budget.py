"""Plot of a MAC-budget run: per-layer pruned fraction after each round next to each layer's MAC share."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._canvas import new_figure, save_figure

__all__ = ["plot_mac_budget"]


def plot_mac_budget(result: Any, path: str | Path) -> Path:
    """Grouped bars: cumulative pruned fraction per layer and round, with the layer's share of dense MACs.

    Args:
        result: the ``MacBudgetResult`` of ``prune_(model, MacBudgetConfig(...), train=...)`` (uses ``.rounds``,
            each with ``.round``, ``.reduction`` and ``.layers`` carrying ``layer``, ``macs``, ``pruned_fraction``).
        path: PNG file to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the result has no rounds.
    """
    import numpy as np

    if not result.rounds:
        raise ValueError("the MAC-budget result has no rounds to plot")
    first = result.rounds[0].layers
    layers = [ly.layer for ly in first]
    x = np.arange(len(layers))
    width = 0.8 / (len(result.rounds) + 1)
    fig = new_figure((max(6, 1.2 * len(layers) + 2), 4))
    ax = fig.subplots()
    total = sum(ly.macs for ly in first) or 1.0
    ax.bar(x, [ly.macs / total for ly in first], width, color="lightgray", label="MAC share")
    for i, rec in enumerate(result.rounds, start=1):
        ax.bar(x + i * width, [ly.pruned_fraction for ly in rec.layers], width,
               label=f"round {rec.round}: {rec.reduction:.0%} MACs removed")
    ax.set_xticks(x + width * len(result.rounds) / 2, layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1)
    ax.set_title("MAC-budget pruning: pruned fraction per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)

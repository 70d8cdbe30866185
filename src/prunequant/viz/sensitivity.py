"""Plot of a per-layer sensitivity analysis: metric drop per layer (most sensitive first), output error, and the
greedy cumulative curve when it was measured; layers a budget plan moved to a fallback are marked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._canvas import new_figure, save_figure

__all__ = ["plot_sensitivity"]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def plot_sensitivity(result: Any, path: str | Path, plan: Any = None) -> Path:
    """Bar chart of the metric drop of each layer compressed alone (most sensitive first) with its output error on
    a second axis; a second panel with the cumulative curve (layers added least sensitive first) if present.

    Args:
        result: a :class:`~prunequant.analysis.SensitivityResult` (or its ``to_dict()``).
        path: PNG file to write.
        plan: optional :class:`~prunequant.analysis.BudgetPlan` (or its ``to_dict()``): bars of the layers it
            moved to a fallback are hatched and labelled, and its budget is drawn as a line.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no layer has a measured metric drop.
    """
    import numpy as np

    rows = [r for r in _get(result, "layers", []) if _get(r, "metric_drop") is not None]
    if not rows:
        raise ValueError("the sensitivity result has no measured layer to plot")
    name = _get(result, "metric_name", "metric")
    layers = [_get(r, "layer") for r in rows]
    drops = np.array([_get(r, "metric_drop") for r in rows], dtype=float)
    errs = np.array([_get(r, "output_error") or 0.0 for r in rows], dtype=float)
    moved: dict[str, str] = {}
    budget = None
    if plan is not None:
        for f, names in (_get(plan, "fallbacks") or {}).items():
            for n in names:
                moved[n] = f
        budget = _get(plan, "max_drop")
    cum = _get(result, "cumulative") or []
    fig = new_figure((max(6.0, 0.55 * len(layers) + 3), 7.5 if cum else 4.2))
    axes = fig.subplots(2 if cum else 1, 1, squeeze=False)[:, 0]
    ax = axes[0]
    x = np.arange(len(layers))
    palette = {"keep_8bit": "tab:orange", "skip": "tab:red", "exclude": "tab:red"}
    colors = [palette.get(moved.get(n, ""), "tab:blue") for n in layers]
    bars = ax.bar(x, drops, 0.7, color=colors)
    for b, n in zip(bars, layers):
        if n in moved:
            b.set_hatch("//")
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:blue", label=f"{name} drop, layer compressed alone")]
    handles += [Patch(facecolor=palette.get(f, "tab:red"), hatch="//", label=f"plan: {f}")
                for f in sorted(set(moved.values()))]
    ax.axhline(0, color="black", lw=0.6)
    if budget is not None:
        ax.axhline(budget, color="tab:red", ls="--", lw=1, label=f"budget {budget:g}")
    ax.set_ylabel(f"{name} drop")
    ax.set_xticks(x, layers, rotation=35, ha="right", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(x, errs, "o", color="tab:gray", ms=4, label="output error ‖y−y₀‖/‖y₀‖")
    ax2.set_ylabel("output error")
    ax2.set_ylim(bottom=0)
    h1, _ = ax.get_legend_handles_labels()
    h2, _ = ax2.get_legend_handles_labels()
    ax.legend(handles + h1 + h2, [h.get_label() for h in handles + h1 + h2], fontsize=7, loc="upper right")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.35 * (hi - lo))  # room for the legend above the bars
    lo2, hi2 = ax2.get_ylim()
    ax2.set_ylim(0, hi2 * 1.35)
    cfg = _get(result, "config") or {}
    ax.set_title(f"per-layer sensitivity ({cfg.get('type', '') if isinstance(cfg, dict) else ''}), "
                 f"most sensitive first", fontsize=10)
    if cum:
        axc = axes[1]
        k = np.arange(1, len(cum) + 1)
        axc.plot(k, [_get(c, "metric_drop") for c in cum], "o-", color="tab:blue")
        axc.set_xticks(k, [f"+{_get(c, 'added')}" for c in cum], rotation=35, ha="right", fontsize=8)
        axc.axhline(0, color="black", lw=0.6)
        if budget is not None:
            axc.axhline(budget, color="tab:red", ls="--", lw=1)
        axc.set_ylabel(f"{name} drop")
        axc.set_title("cumulative: layers compressed together, least sensitive first", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)

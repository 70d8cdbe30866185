"""Training trajectory of a joint run: size, average bits and sparsity, and the validation metric, per epoch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._canvas import new_figure, save_figure

__all__ = ["plot_joint_history"]


def plot_joint_history(history: list[dict[str, Any]], path: str | Path, target_bytes: float | None = None,
                       title: str = "joint pruning + mixed-precision QAT") -> Path:
    """Two panels over epochs (soft phase, then fine-tune): size in bytes (+ target) with sparsity, and average
    weight / feature-map bits with the validation metric.

    Args:
        history: ``JointResult.history`` (per-epoch dicts with ``size_bytes``, ``sparsity``, ``wbits``, ``abits``,
            optionally ``phase`` and ``val_*``).
        path: PNG file to write.
        target_bytes: drawn as a dashed line when given.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    x = list(range(1, len(history) + 1))
    fig = new_figure((10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(x, [h["size_bytes"] for h in history], marker="o", ms=3, label="size (bytes)")
    if target_bytes:
        ax1.axhline(target_bytes, color="gray", ls="--", lw=1, label="target")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("bytes (report formula)")
    ax1b = ax1.twinx()
    ax1b.plot(x, [h["sparsity"] for h in history], color="tab:red", lw=1, label="sparsity")
    ax1b.set_ylabel("sparsity", color="tab:red")
    ax2.plot(x, [h["wbits"] for h in history], marker="o", ms=3, label="avg weight bits")
    ax2.plot(x, [h["abits"] for h in history], marker="s", ms=3, label="avg feature-map bits")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("bits")
    metric = next((k for k in (history[0] if history else {}) if k.startswith("val_")), None)
    if metric:
        ax2b = ax2.twinx()
        ax2b.plot(x, [h.get(metric) for h in history], color="tab:green", lw=1)
        ax2b.set_ylabel(metric, color="tab:green")
    soft = sum(1 for h in history if h.get("phase", "soft") == "soft")
    for ax in (ax1, ax2):
        if 0 < soft < len(history):
            ax.axvline(soft + 0.5, color="k", lw=0.8, ls=":")
        ax.legend(fontsize=8, loc="upper right" if ax is ax2 else "lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)

"""Per-layer plot of a :class:`~prunequant.analysis.Report`: dense vs effective MACs, sparsity and bits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._canvas import new_figure, save_figure

__all__ = ["plot_report"]


def plot_report(report: Any, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG with two panels: MACs (dense and effective, log scale) and sparsity with weight bits per layer.

    Args:
        report: a :class:`prunequant.analysis.Report` (from ``prunequant.analysis.report(model, x)``).
        path: PNG file to write (parent folders are created).
        title: figure title (default: totals of the report).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import numpy as np

    rows = report.rows
    names = [r.name for r in rows]
    x = np.arange(len(rows))
    fig = new_figure((max(6.0, 0.55 * len(rows) + 2), 7))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(x - 0.2, [max(r.macs, 0) for r in rows], 0.4, label="dense MACs", color="#8da0cb")
    ax1.bar(x + 0.2, [max(r.effective_macs, 0) for r in rows], 0.4, label="effective MACs", color="#fc8d62")
    if any(r.macs > 0 for r in rows):
        ax1.set_yscale("log")
    ax1.set_ylabel("MACs")
    ax1.legend(loc="best", fontsize=8)
    t = report.total
    dense = getattr(t, "bytes_dense", None)
    if dense is None:
        dense = getattr(t, "bytes_fp32", 0)
    ax1.set_title(title or f"{report.model}: {t.macs:,} MACs, {t.effective_macs:,} effective; "
                           f"{dense:,} B fp32 -> {t.bytes:,} B ({report.compression_ratio:.1f}x)", fontsize=9)
    ax2.bar(x, [100 * r.sparsity for r in rows], 0.6, color="#66c2a5", label="sparsity")
    ax2.set_ylabel("sparsity (%)")
    ax2.set_ylim(0, 100)
    ax3 = ax2.twinx()
    ax3.plot(x, [r.weight_bits for r in rows], "o-", color="#e78ac3", label="weight bits")
    ax3.plot(x, [r.act_bits for r in rows], "s--", color="#a6d854", label="act bits")
    ax3.set_ylabel("bits")
    ax3.set_ylim(0, 44)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", ncol=3, fontsize=8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)

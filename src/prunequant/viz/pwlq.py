"""Per-layer plot of a quantized model: weight histogram with the quantizer's breakpoints and levels.

For per-channel quantizers one representative channel is drawn per layer (the channel whose breakpoint ratio
p/m is the layer's median), since every channel has its own grid.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._canvas import new_figure, save_figure

__all__ = ["plot_weight_histograms", "quantized_weights"]


def quantized_weights(model: nn.Module) -> list[tuple[str, torch.Tensor, Any]]:
    """``(name, float weight entering the quantizer, quantizer)`` for every weight fake-quantizer in ``model``."""
    from ..core.chain import weight_chains

    return [(c.key, c.quant_input(), c.quantizer) for c in weight_chains(model) if c.quantizer is not None]


def _channels(w: torch.Tensor, dim: int | None) -> torch.Tensor:
    return w.reshape(1, -1) if dim is None else w.movedim(dim, 0).reshape(w.shape[dim], -1)


@torch.no_grad()
def plot_weight_histograms(model: nn.Module, path: str | Path, max_layers: int = 24, bins: int = 80) -> Path:
    """Write one histogram panel per quantized weight (up to ``max_layers``) to ``path`` (PNG).

    Args:
        model: a model after ``quantize_`` (weight fake-quantizers attached as parametrizations).
        path: PNG file to write.
        max_layers: at most this many panels.
        bins: histogram bins per panel.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the model carries no weight quantizers.
    """
    items = quantized_weights(model)[:max_layers]
    if not items:
        raise ValueError("the model carries no weight quantizers to plot")
    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    fig = new_figure((4 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, w, quant) in zip(axes.flat, items):
        x = _channels(w, quant.dim).float().cpu()
        lev = quant.levels().float().cpu()
        lev = lev.reshape(1, -1) if lev.dim() == 1 else lev
        bp = getattr(quant, "breakpoints", None)
        mx = getattr(quant, "max_abs", None)
        if torch.is_tensor(bp) and torch.is_tensor(mx) and bp.numel():
            bp2 = bp.reshape(bp.shape[0], -1)
            ratio = (bp2[:, 0] / mx.reshape(-1).clamp(min=1e-30)).cpu()
            c = int(ratio.argsort()[len(ratio) // 2])
            bps = bp2[c].float().cpu().tolist()
        else:
            c, bps = 0, []
        c = min(c, x.shape[0] - 1)
        row = x[c]
        gain_t = getattr(quant, "bc_gain", None)
        gain = gain_t.reshape(-1)[min(c, gain_t.numel() - 1)].item() if torch.is_tensor(gain_t) and gain_t.dim() \
            else None
        ax.hist(row.numpy(), bins=bins, color="0.6")
        ymax = ax.get_ylim()[1]
        ax.vlines(lev[min(c, lev.shape[0] - 1)].numpy(), 0, 0.08 * ymax, color="tab:blue", lw=0.8,
                  label=f"{lev.shape[-1]} levels")
        for p in bps:
            ax.axvline(p, color="tab:red", ls="--", lw=1)
            ax.axvline(-p, color="tab:red", ls="--", lw=1)
        q = quant.quantize(w).float().cpu()
        mse = float(((q - w.float().cpu()) ** 2).mean())
        extra = f", center {float((row.abs() < bps[0]).float().mean()):.0%}" if bps else ""
        ax.set_title(f"{name}\n{getattr(quant, 'scheme', type(quant).__name__)} {quant.bits}b ch {c}{extra}, "
                     f"MSE {mse:.2g} (before BC)" + ("" if gain is None else f", bc gain {gain:.3f}"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)

"""Per-layer plot of a quantized model: weight histogram with the quantizer's breakpoints and levels.

For per-channel quantizers one representative channel is drawn per layer (the channel whose breakpoint ratio
p/m is the layer's median), since every channel has its own grid.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .base import WeightFakeQuant, to_channels
from .pwlq import PWLQWeightQuant


def quantized_weights(model: nn.Module) -> list[tuple[str, torch.Tensor, WeightFakeQuant]]:
    """``(name, float weight entering the quantizer, quantizer)`` for every weight fake-quantizer in ``model``."""
    out = []
    for mname, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        for pname, plist in plists.items():
            x = plist.original
            for p in plist:
                if isinstance(p, WeightFakeQuant):
                    out.append((f"{mname}.{pname}" if mname else pname, x.detach(), p))
                    break
                x = p(x)
    return out


@torch.no_grad()
def plot_weight_histograms(model: nn.Module, path: str | Path, max_layers: int = 24, bins: int = 80) -> Path:
    """Write one histogram panel per quantized weight (up to ``max_layers``) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = quantized_weights(model)[:max_layers]
    if not items:
        raise ValueError("the model carries no weight quantizers to plot")
    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, w, quant) in zip(axes.flat, items):
        x = to_channels(w, quant.dim).float().cpu()
        lev = quant.levels().float().cpu()
        if isinstance(quant, PWLQWeightQuant):
            ratio = (quant.breakpoints[:, 0] / quant.max_abs.clamp(min=1e-30)).cpu()
            c = int(ratio.argsort()[len(ratio) // 2])
            bps = quant.breakpoints[c].float().cpu().tolist()
        else:
            c, bps = 0, []
        row = x[c]
        gain = quant.bc_gain[c].item() if quant.bc_gain is not None and quant.bc_gain.dim() else None
        ax.hist(row.numpy(), bins=bins, color="0.6")
        ymax = ax.get_ylim()[1]
        ax.vlines(lev[c].numpy(), 0, 0.08 * ymax, color="tab:blue", lw=0.8, label=f"{lev.shape[1]} levels")
        for p in bps:
            ax.axvline(p, color="tab:red", ls="--", lw=1)
            ax.axvline(-p, color="tab:red", ls="--", lw=1)
        q = quant.quantize(w).float().cpu()
        mse = float(((q - w.float().cpu()) ** 2).mean())
        extra = f", center {float((row.abs() < bps[0]).float().mean()):.0%}" if bps else ""
        ax.set_title(f"{name}\n{quant.scheme} {quant.bits}b ch {c}{extra}, MSE {mse:.2g} (before BC)"
                     + ("" if gain is None else f", bc gain {gain:.3f}"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

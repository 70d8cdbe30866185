"""Fold BatchNorm into the preceding conv / linear layer, in place (the model keeps its class).

For a BN with running mean mu, variance var, eps, weight gamma and bias beta after a layer with weight W and
bias b, let ``g = gamma / sqrt(var + eps)`` per output channel. Then ``W' = W * g`` and the layer's bias
becomes ``b * g``; the remaining shift ``beta - g * mu`` is

* kept in the BN, which is set to an identity plus that shift (mean 0, var 1 - eps, gamma 1) - the reference
  code's way, default: the state-dict keys do not change, so saved models still load into a fresh model;
* or, with ``remove_bn=True``, added to the layer's bias and the BN replaced by ``nn.Identity``.

The folded model equals the original in eval mode (folding uses running statistics). Pairs are found with
``torch.fx`` (any graph where a Conv1d/2d/3d or Linear output feeds only a BatchNorm); if the model cannot be
traced, consecutive (layer, BN) children of ``nn.Sequential`` containers are used.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.targets import set_submodule
from ..errors import LayerError

FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _pairs_fx(model: nn.Module) -> list[tuple[str, str]] | None:
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means "use the module-pattern fallback"
        return None
    mods = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), BATCHNORMS) or not node.args:
            continue
        src = node.args[0]
        if getattr(src, "op", None) != "call_module" or not isinstance(mods.get(src.target), FOLDABLE):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def _pairs_sequential(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for prefix, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        names = list(mod._modules.keys())
        for a, b in itertools.pairwise(names):
            if isinstance(mod._modules[a], FOLDABLE) and isinstance(mod._modules[b], BATCHNORMS):
                pairs.append((f"{prefix}.{a}" if prefix else a, f"{prefix}.{b}" if prefix else b))
    return pairs


@torch.no_grad()
def fold_pair(layer: nn.Module, bn: nn.Module, name: str = "layer", remove_bn: bool = False) -> None:
    """Fold ``bn`` into ``layer`` in place; ``bn`` becomes an identity plus shift (unless ``remove_bn``, in which
    case the shift goes into the layer bias and the caller drops ``bn``)."""
    if bn.running_mean is None or bn.running_var is None:
        raise LayerError(f"{name}: BatchNorm without running statistics (track_running_stats=False) cannot be "
                         "folded")
    out_ch = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if bn.num_features != out_ch:
        raise LayerError(f"{name}: BatchNorm has {bn.num_features} features but the layer has {out_ch} outputs")
    if parametrize.is_parametrized(layer, "weight"):
        w = layer.parametrizations["weight"].original  # e.g. a pruning mask stays valid under per-row scaling
    else:
        w = layer.weight
    dt = torch.float64
    g = bn.running_var.to(dt).add(bn.eps).rsqrt()
    if bn.weight is not None:
        g = g * bn.weight.to(dt)
    beta = bn.bias.to(dt) if bn.bias is not None else torch.zeros_like(g)
    shift = beta - g * bn.running_mean.to(dt)
    w.copy_((w.to(dt) * g.reshape(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
    bias = layer.bias.to(dt) * g if layer.bias is not None else None
    keep_in_bn = not remove_bn and bn.affine
    if not keep_in_bn:
        bias = shift if bias is None else bias + shift
    if bias is not None:
        if layer.bias is None:
            layer.bias = nn.Parameter(bias.to(w.dtype))
        else:
            layer.bias.copy_(bias.to(layer.bias.dtype))
    if keep_in_bn:
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # var + eps rounds to exactly 1 for the usual eps
        bn.weight.fill_(1.0)
        bn.bias.copy_(shift.to(bn.bias.dtype))
    elif not remove_bn:  # non-affine BN: make it an identity
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


def fold_batchnorm(model: nn.Module, remove_bn: bool = False) -> list[tuple[str, str]]:
    """Fold every BatchNorm that directly follows a Conv/Linear into it; returns the (layer, bn) name pairs.

    BatchNorms that follow something else (e.g. an addition) are left untouched.
    """
    pairs = _pairs_fx(model)
    if pairs is None:
        pairs = _pairs_sequential(model)
    for layer_name, bn_name in pairs:
        fold_pair(model.get_submodule(layer_name), model.get_submodule(bn_name), layer_name, remove_bn)
        if remove_bn:
            set_submodule(model, bn_name, nn.Identity())
    return pairs

"""A deep copy of a model with every parametrization baked into a plain parameter (the original is untouched)."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["baked_copy"]


@torch.no_grad()
def baked_copy(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` whose parametrized tensors become plain parameters holding their effective values.

    ``torch.nn.utils.parametrize.remove_parametrizations`` on a deep copy would delete the property from the
    dynamically created class that the copy shares with the original, breaking the original; here each copied
    module is switched back to its base class on the instance only. Hooks and child modules (e.g. input
    quantizers) are kept."""
    m = copy.deepcopy(model)
    for mod in list(m.modules()):
        if not parametrize.is_parametrized(mod):
            continue
        effective = {t: getattr(mod, t).detach().clone() for t in mod.parametrizations}
        mod.__class__ = type(mod).__bases__[0]
        del mod._modules["parametrizations"]
        for t, v in effective.items():
            mod.register_parameter(t, nn.Parameter(v, requires_grad=False))
        if hasattr(mod, "_init_flat_weights"):  # RNNs keep a list of their weight tensors
            mod._init_flat_weights()
    return m

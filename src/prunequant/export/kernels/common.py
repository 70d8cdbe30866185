"""Helpers shared by the kernel modules: effective weight, bias, conv arguments, the dense (baked) copy."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...core.chain import WeightChain
from ...errors import UnsupportedModuleError


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the forward uses (masks and fake quantizer applied), detached."""
    return module.weight.detach().clone()


def layer_quantizer(module: nn.Module):
    """The weight quantizer on ``module.weight`` (``None`` if there is none)."""
    return WeightChain(module, "weight").quantizer


def quantizer_input(module: nn.Module) -> Tensor:
    """The tensor entering the weight quantizer of ``module.weight``."""
    return WeightChain(module, "weight").quant_input()


def bias_of(module: nn.Module) -> Tensor | None:
    return None if module.bias is None else module.bias.detach().clone()


def conv_args(conv: nn.Conv2d) -> dict[str, Any]:
    if isinstance(conv.padding, str):
        raise UnsupportedModuleError(f"Conv2d with padding={conv.padding!r} is not supported by fast paths")
    if conv.padding_mode != "zeros":
        raise UnsupportedModuleError(f"Conv2d with padding_mode={conv.padding_mode!r} is not supported")
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}


def dense_copy(module: nn.Module) -> nn.Module:
    """A new plain Linear/Conv2d with ``module``'s effective weight and bias (no parametrizations or hooks).

    Built fresh rather than by ``deepcopy`` + ``remove_parametrizations``: a deep copy shares the dynamically
    created parametrized class, and removing the parametrization from the copy would break the original."""
    if isinstance(module, nn.Linear):
        new: nn.Module = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.Conv2d):
        new = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                        padding=module.padding, dilation=module.dilation, groups=module.groups,
                        bias=module.bias is not None, padding_mode=module.padding_mode)
    else:
        raise UnsupportedModuleError(f"no dense path for {type(module).__name__}")
    with torch.no_grad():
        new.weight = nn.Parameter(effective_weight(module), requires_grad=False)
        if module.bias is not None:
            new.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
    return new.to(module.weight.device).eval()

"""Multi-branch int8 kernels for quantizers without a single int8 form (PWLQ): the paper's accumulator split
(docs/deployment.md). The weight is ``sum_b scale_b * codes_b`` over the int8 branches the quantizer declares
(:meth:`~prunequant.core.quantizer.WeightFakeQuant.int8_branches`; PWLQ: per region ``sign*k`` scaled by its
step, plus the sign of the outer regions scaled by p_r), stacked into one per-channel int8 dynamic layer with
``B * out`` outputs and summed afterwards. Weights exact up to the float rounding of the sum; activations
dynamically int8."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import UnsupportedModuleError
from .common import bias_of, conv_args, effective_weight, layer_quantizer, quantizer_input
from .int8 import Int8Conv2d, Int8Linear

__all__ = ["PWLQInt8Conv2d", "PWLQInt8Linear", "int8_branches", "pwlq_branches"]


def int8_branches(module: nn.Module) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``(codes (B, out, ...), scales (B, out), zero_points (B, out), signed)`` of the weight quantizer's int8
    branches (``signed``: int8 rather than uint8 container), with positions pruned after quantizing set to the
    zero point. Raises :class:`UnsupportedModuleError` when the
    layer's quantizer declares none."""
    q = layer_quantizer(module)
    if q is None:
        raise UnsupportedModuleError("the branch path needs a weight quantizer on the layer")
    forms = q.int8_branches(quantizer_input(module))
    if not forms:
        raise UnsupportedModuleError(f"{q.scheme} quantizer has no int8 branch form (bias correction, > 8 bits or "
                                     "a channel axis other than 0?)")
    keep = effective_weight(module) != 0
    forms = [f.masked(keep) for f in forms]
    return (torch.stack([f.codes for f in forms]), torch.stack([f.scale.float() for f in forms]),
            torch.stack([f.zero_point for f in forms]), all(f.signed for f in forms))


def pwlq_branches(module: nn.Module) -> tuple[Tensor, Tensor]:
    """Int8 branch codes (B, out, ...) and per-channel scales (B, out) of a symmetric multi-branch layer."""
    codes, scales, zps, signed = int8_branches(module)
    if bool(zps.any()) or not signed:
        raise UnsupportedModuleError("the branch path needs symmetric (zero-point 0) branches")
    return codes.to(torch.int8), scales


class PWLQInt8Linear(nn.Module):
    """PWLQ Linear as ``2R - 1`` int8 branches stacked in one dynamic int8 Linear, then summed."""

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None):
        super().__init__()
        self.n_branches, self.out_features = codes.shape[0], codes.shape[1]
        self.inner = Int8Linear(codes.reshape(-1, codes.shape[-1]), scales.reshape(-1), None)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Linear) -> PWLQInt8Linear:
        codes, scales = pwlq_branches(m)
        return cls(codes, scales, bias_of(m))

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        y = y.reshape(*y.shape[:-1], self.n_branches, self.out_features).sum(-2)
        return y if self.bias is None else y + self.bias


class PWLQInt8Conv2d(nn.Module):
    """PWLQ Conv2d as ``2R - 1`` int8 branches stacked in one dynamic int8 Conv2d (groups=1), then summed."""

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None, stride, padding, dilation, groups,
                 out_absmax: float):
        super().__init__()
        if groups != 1:
            raise UnsupportedModuleError("PWLQInt8Conv2d supports groups=1 only")
        self.n_branches, self.out_channels = codes.shape[0], codes.shape[1]
        flat_codes, flat_scales = codes.reshape(-1, *codes.shape[2:]), scales.reshape(-1)
        self.inner = Int8Conv2d(flat_codes, flat_scales, None, stride, padding, dilation, groups, out_absmax)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Conv2d, x: Tensor) -> PWLQInt8Conv2d:
        codes, scales = pwlq_branches(m)
        args = conv_args(m)
        absmax = Int8Conv2d.calibrate(codes.reshape(-1, *codes.shape[2:]), scales.reshape(-1), None, args, x)
        return cls(codes, scales, bias_of(m), **args, out_absmax=absmax)

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        B, _, H, W = y.shape
        y = y.reshape(B, self.n_branches, self.out_channels, H, W).sum(1)
        return y if self.bias is None else y + self.bias[None, :, None, None]

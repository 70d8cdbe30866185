"""Sparse CSR kernels: :class:`SparseLinear` / :class:`SparseConv2d` (int32 indices, exact up to float summation
order). Linear uses ``torch.mv`` at batch 1 and ``torch.mm`` otherwise; Conv2d (groups=1) is im2col
(``F.unfold``) + one CSR GEMM."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UnsupportedModuleError
from .common import bias_of, conv_args, effective_weight

__all__ = ["SparseConv2d", "SparseLinear"]


def _csr32(w2d: Tensor) -> Tensor:
    """``w2d`` as a CSR tensor with int32 indices (half the index bytes of int64; measurably faster)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = w2d.to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32),
                                       csr.values(), csr.shape, check_invariants=False)


# --------------------------------------------------------------------------------------------- sparse
class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` as CSR (int32 indices): ``torch.mv`` for one row, ``torch.mm`` otherwise."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight_csr = _csr32(weight.detach())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Linear) -> SparseLinear:
        return cls(effective_weight(m), bias_of(m))

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] == 1:
            y = torch.mv(self.weight_csr, x2[0]).unsqueeze(0)
        else:
            y = torch.mm(self.weight_csr, x2.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight_csr.values().numel()
        return f"{self.in_features}->{self.out_features}, nnz={nnz}"


class SparseConv2d(nn.Module):
    """Conv2d (groups=1) as im2col + one CSR GEMM over the whole batch."""

    def __init__(self, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int = 1):
        super().__init__()
        if groups != 1:
            raise UnsupportedModuleError("SparseConv2d supports groups=1 only")
        self.out_channels = weight.shape[0]
        self.kernel_size = tuple(weight.shape[2:])
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight_csr = _csr32(weight.detach().reshape(self.out_channels, -1))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Conv2d) -> SparseConv2d:
        return cls(effective_weight(m), bias_of(m), **conv_args(m))

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        kh, kw = self.kernel_size
        oh = (H + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (W + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)           # (C*kh*kw, B*L)
        y = torch.mm(self.weight_csr, cols).reshape(self.out_channels, B, oh * ow).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias[None, :, None]
        return y.reshape(B, self.out_channels, oh, ow)

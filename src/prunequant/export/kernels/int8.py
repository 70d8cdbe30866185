"""Int8 kernels over PyTorch's quantized engine (``torch.ao``, x86/fbgemm): :class:`Int8Linear` (dynamic int8) and
:class:`Int8Conv2d` (static module with per-call input parameters and a calibrated output scale).

Weights come from the quantizer's own integer form (:meth:`~prunequant.core.quantizer.WeightFakeQuant.int8_form`)
when it has a symmetric one, so they are exact; otherwise the effective weight is re-quantized per channel
(symmetric, max|w|/127)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import bias_of, conv_args, effective_weight, layer_quantizer, quantizer_input

__all__ = ["Int8Conv2d", "Int8Linear", "int8_weight"]


def int8_weight(module: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-output-channel (int8 codes, float scales) reproducing the effective weight: the quantizer's symmetric
    integer form when it has one (exact; weights pruned after quantizing get code 0), else a max|w|/127
    re-quantization."""
    q = layer_quantizer(module)
    w = effective_weight(module)
    form = None if q is None else q.int8_form(quantizer_input(module))
    if form is not None and form.signed and not bool(form.zero_point.any()):
        form = form.masked(w != 0)
        return form.codes.to(torch.int8), form.scale.detach().float().clone().reshape(-1)
    flat = w.reshape(w.shape[0], -1)
    s = flat.abs().amax(1) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    codes = torch.round(flat / s[:, None]).clamp(-127, 127).reshape(w.shape)
    return codes.to(torch.int8), s


def _qweight(codes: Tensor, scales: Tensor) -> Tensor:
    """A per-channel ``qint8`` tensor holding exactly ``codes`` with ``scales`` along dim 0."""
    shape = [-1] + [1] * (codes.dim() - 1)
    w = codes.float() * scales.float().reshape(shape)
    return torch.quantize_per_channel(w, scales.double(), torch.zeros(codes.shape[0], dtype=torch.long), 0,
                                      torch.qint8)


def _check_qengine() -> None:
    if "x86" in torch.backends.quantized.supported_engines and torch.backends.quantized.engine == "none":
        torch.backends.quantized.engine = "x86"


class Int8Linear(nn.Module):
    """Linear through ``torch.ao.nn.quantized.dynamic.Linear`` (int8 weights per channel, int8 activations)."""

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None):
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as QLinear

        _check_qengine()
        out_f, in_f = codes.shape
        self.inner = QLinear(in_f, out_f, bias_=bias is not None, dtype=torch.qint8)
        self.inner.set_weight_bias(_qweight(codes, scales), bias)

    @classmethod
    def from_module(cls, m: nn.Linear) -> Int8Linear:
        codes, s = int8_weight(m)
        return cls(codes, s, bias_of(m))

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


class Int8Conv2d(nn.Module):
    """Conv2d through ``torch.ao.nn.quantized.Conv2d`` (x86/fbgemm): int8 weights per channel; the input is
    quantized per call (per-tensor quint8 from its min/max), the output requantized with a scale calibrated on an
    example input (``OUTPUT_HEADROOM`` x its max|y|; larger outputs saturate), then dequantized.

    (The ``torch.ao`` *dynamic* Conv2d gives wrong results for non-negative inputs in torch 2.13 - relative
    error ~1 after a ReLU - so the static module with per-call input parameters is used instead.)"""

    OUTPUT_HEADROOM = 1.25

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None, stride, padding, dilation, groups,
                 out_absmax: float):
        super().__init__()
        from torch.ao.nn.quantized import Conv2d as QConv2d

        _check_qengine()
        out_c, in_per_group, kh, kw = codes.shape
        self.inner = QConv2d(in_per_group * groups, out_c, (kh, kw), stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias=bias is not None)
        self.inner.set_weight_bias(_qweight(codes, scales), None if bias is None else bias.float())
        self.inner.scale = max(float(out_absmax), 1e-12) * self.OUTPUT_HEADROOM / 127.0
        self.inner.zero_point = 128

    @staticmethod
    def calibrate(codes: Tensor, scales: Tensor, bias: Tensor | None, conv_args: dict, x: Tensor) -> float:
        w = codes.float() * scales.float().reshape(-1, 1, 1, 1)
        return float(F.conv2d(x, w, bias, **conv_args).abs().max())

    @classmethod
    def from_module(cls, m: nn.Conv2d, x: Tensor) -> Int8Conv2d:
        codes, s = int8_weight(m)
        args = conv_args(m)
        return cls(codes, s, bias_of(m), **args, out_absmax=cls.calibrate(codes, s, bias_of(m), args, x))

    def forward(self, x: Tensor) -> Tensor:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        xq = torch.quantize_per_tensor(x.float(), scale, round(-lo / scale), torch.quint8)
        return self.inner(xq).dequantize()

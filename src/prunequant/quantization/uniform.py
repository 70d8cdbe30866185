"""Uniform quantizers (paper eq. 1): symmetric and affine, per tensor or per output channel.

``w_hat = scale * (clamp(round(w / scale) + zero_point, qmin, qmax) - zero_point)``

* symmetric (signed codes -2^(b-1)..2^(b-1)-1, ``zero_point = 0``): ``scale = 2 m / (2^b - 1)`` with
  ``m = max|w|`` - the PWLQ reference code's choice; no clipping search for weights.
* affine (codes 0..2^b-1): range ``[min(w, 0), max(w, 0)]``, ``scale = range / (2^b - 1)``, integer
  ``zero_point = round(-lo / scale)`` so that 0 stays exactly representable (pruned zeros survive).

``dim`` selects the channel axis (per-channel parameters of shape (C,)); ``dim=None`` means one scale for
the whole tensor. An all-zero channel gets ``scale = 1`` and is reproduced exactly (zeros).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import IntForm, WeightFakeQuant, check_bits, check_weight, per_channel, register_quantizer, ste, to_channels


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """(qmin, qmax) of b-bit signed or unsigned integer codes."""
    check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def symmetric_scale(w: Tensor, bits: int, dim: int | None = 0) -> Tensor:
    """Per-channel (C,) or per-tensor (0-d) scale ``2 max|w| / (2^b - 1)``; 1 for an all-zero channel."""
    check_bits(bits)
    m = to_channels(w.detach(), dim).abs().amax(1)
    s = 2 * m / (2 ** bits - 1)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s.reshape(()) if dim is None else s


def affine_qparams(w: Tensor, bits: int, dim: int | None = 0) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, integer zero_point) covering ``[min(w,0), max(w,0)]`` with codes 0..2^b-1."""
    check_bits(bits)
    x = to_channels(w.detach(), dim)
    lo, hi = x.amin(1).clamp(max=0), x.amax(1).clamp(min=0)
    s = (hi - lo) / (2 ** bits - 1)
    s = torch.where(s > 0, s, torch.ones_like(s))
    zp = torch.round(-lo / s).clamp(0, 2 ** bits - 1).to(torch.int32)
    return (s.reshape(()), zp.reshape(())) if dim is None else (s, zp)


def _broadcast(scale: Tensor, zero_point: Tensor | None, w: Tensor, dim: int | None):
    s = per_channel(torch.as_tensor(scale, dtype=w.dtype, device=w.device), w, dim)
    z = 0 if zero_point is None else per_channel(
        torch.as_tensor(zero_point, device=w.device).to(w.dtype), w, dim)
    return s, z


def uniform_codes(w: Tensor, bits: int, scale: Tensor, zero_point: Tensor | None = None, *,
                  signed: bool = True, dim: int | None = 0) -> Tensor:
    """Integer codes (int32) of ``w`` for the given per-channel (or per-tensor) scale and zero point."""
    qmin, qmax = code_range(bits, signed)
    s, z = _broadcast(scale, zero_point, w, dim)
    return (torch.round(w / s) + z).clamp(qmin, qmax).to(torch.int32)


def uniform_dequantize(codes: Tensor, scale: Tensor, zero_point: Tensor | None = None, *,
                       dim: int | None = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float values ``scale * (codes - zero_point)``."""
    c = codes.to(dtype)
    s, z = _broadcast(scale, zero_point, c, dim)
    return (c - z) * s


def uniform_quantize(w: Tensor, bits: int, scale: Tensor, zero_point: Tensor | None = None, *,
                     signed: bool = True, dim: int | None = 0) -> Tensor:
    """Fake-quantize ``w`` (same shape and dtype). Straight-through gradient inside the code range
    (extended by half a step), zero outside, so clipped values get no gradient."""
    qmin, qmax = code_range(bits, signed)
    s, z = _broadcast(scale, zero_point, w, dim)
    q = (torch.round(w / s) + z).clamp(qmin, qmax)
    return ste(w, (q - z) * s, (qmin - z - 0.5) * s, (qmax - z + 0.5) * s)


def quantize_symmetric(w: Tensor, bits: int, dim: int | None = 0) -> Tensor:
    """Convenience: symmetric fake-quantization with the scale computed from ``w``."""
    return uniform_quantize(w, bits, symmetric_scale(w, bits, dim), None, signed=True, dim=dim)


def quantize_affine(w: Tensor, bits: int, dim: int | None = 0) -> Tensor:
    """Convenience: affine fake-quantization with scale and zero point computed from ``w``."""
    s, z = affine_qparams(w, bits, dim)
    return uniform_quantize(w, bits, s, z, signed=False, dim=dim)


@register_quantizer("uniform")
class UniformWeightQuant(WeightFakeQuant):
    """Uniform weight parametrization with frozen per-channel (or per-tensor) scale and zero point.

    Spec: attrs ``bits``, ``dim``, ``symmetric``; tensors ``scale``, ``zero_point`` (+ bias correction).
    Integer form: its own codes (<= 8 bits, no bias correction). Joint candidate: symmetric, max-scaled.
    """

    joint_candidate = True

    def __init__(self, bits: int, scale: Tensor, zero_point: Tensor | None = None, *, symmetric: bool = True,
                 dim: int | None = 0):
        super().__init__(bits, dim)
        self.symmetric = bool(symmetric)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).detach().clone())
        zp = torch.zeros_like(self.scale, dtype=torch.int32) if zero_point is None else zero_point
        self.register_buffer("zero_point", torch.as_tensor(zp).to(torch.int32).detach().clone())

    @classmethod
    def from_weight(cls, w: Tensor, bits: int, *, symmetric: bool = True, dim: int | None = 0,
                    name: str = "weight") -> UniformWeightQuant:
        """Fit scale (and zero point) to ``w``; raises :class:`LayerError` naming ``name`` on bad input."""
        check_bits(bits, "weight bits")
        check_weight(w, name)
        if symmetric:
            return cls(bits, symmetric_scale(w, bits, dim), None, symmetric=True, dim=dim)
        s, z = affine_qparams(w, bits, dim)
        return cls(bits, s, z, symmetric=False, dim=dim)

    def quantize(self, w: Tensor) -> Tensor:
        return uniform_quantize(w, self.bits, self.scale, self.zero_point, signed=self.symmetric, dim=self.dim)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        return {"codes": uniform_codes(w.detach(), self.bits, self.scale, self.zero_point,
                                       signed=self.symmetric, dim=self.dim)}

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        return uniform_dequantize(codes["codes"], self.scale, self.zero_point, dim=self.dim)

    def _state(self) -> dict[str, Tensor]:
        return {"scale": self.scale, "zero_point": self.zero_point}

    def _attrs(self) -> dict:
        return {"symmetric": self.symmetric}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> UniformWeightQuant:
        return cls(int(attrs["bits"]), tensors["scale"], tensors["zero_point"], symmetric=bool(attrs["symmetric"]),
                   dim=attrs["dim"])

    def int8_form(self, w: Tensor) -> IntForm | None:
        if self.bits > 8 or self.bc_shift is not None or self.dim not in (0, None):
            return None
        codes = self.codes(w)["codes"]
        out = w.shape[0] if w.dim() else 1
        scale = self.scale.detach().float().reshape(-1).expand(out).clone() if self.dim is None \
            else self.scale.detach().float().clone()
        zp = self.zero_point.detach().reshape(-1).to(torch.int32).expand(out).clone() if self.dim is None \
            else self.zero_point.detach().to(torch.int32).clone()
        if self.symmetric:
            return IntForm(codes, scale, zp, signed=True)
        if self.bits == 8:  # 0..255 with a zero point: the uint8 container
            return IntForm(codes, scale, zp, signed=False)
        # <= 7-bit affine codes fit int8 after a shift by 2^(b-1) (codes and zero point alike)
        half = 2 ** (self.bits - 1)
        return IntForm(codes - half, scale, zp - half, signed=True)

    @classmethod
    def joint_quantize(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None) -> Tensor:
        return uniform_quantize(w, bits, symmetric_scale(w, bits, dim), None, signed=True, dim=dim)

    @classmethod
    def joint_fixed(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None,
                    name: str) -> UniformWeightQuant:
        return cls.from_weight(w, bits, symmetric=True, dim=dim, name=name)

    def levels(self) -> Tensor:
        """All representable values per channel, (C, 2^b) (or (1, 2^b) per tensor)."""
        qmin, qmax = code_range(self.bits, self.symmetric)
        q = torch.arange(qmin, qmax + 1, device=self.scale.device, dtype=torch.float32)
        s = self.scale.reshape(-1, 1)
        return (q - self.zero_point.reshape(-1, 1).float()) * s


def uniform_levels(w: Tensor, n_levels: int, dim: int | None = 0) -> Tensor:
    """``n_levels`` evenly spaced values on [-max|w|, max|w|] per channel, (C, n_levels) - a Lloyd-Max init."""
    m = to_channels(w.detach(), dim).abs().amax(1, keepdim=True)
    t = torch.linspace(-1.0, 1.0, n_levels, device=w.device, dtype=m.dtype)
    return m * t


__all__ = [
    "UniformWeightQuant",
    "affine_qparams",
    "code_range",
    "quantize_affine",
    "quantize_symmetric",
    "symmetric_scale",
    "uniform_codes",
    "uniform_dequantize",
    "uniform_levels",
    "uniform_quantize",
]

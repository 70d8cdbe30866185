"""Power-of-two (log2) weight quantizer: every weight becomes ``sign * scale * 2^-e`` (or 0).

With b bits a weight is stored as one signed code ``c = sign * m``, ``m`` in 0..M, M = 2^(b-1) - 1:
``m = 0`` is zero, ``m >= 1`` the level ``scale * 2^-(m-1)``, i.e. exponents 0 .. -(M-1) below a per-channel
``scale``. Multiplying by such a weight is a shift and a sign (plus one per-channel scale multiply), which is what
makes the scheme useful on its own for shift-only accelerators and wearables. Rounding is to the nearest level
(not the nearest exponent): the decision point between ``2^-j`` and ``2^-(j+1)`` is ``0.75 * 2^-j``, and values
below half the smallest level round to 0. The scale is searched per channel over ``max|w| * 2^(-t/T)``,
t = 0..T-1 (the levels are scale-invariant under powers of two, so one octave covers every choice).

For b <= 4 the levels ``2^(M-m)`` (<= 64) are int8 integers times ``scale * 2^-(M-1)``, so the quantizer has an
exact int8 form and runs through the int8 kernels and ONNX Q/DQ like a uniform quantizer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..base import IntForm, WeightFakeQuant, check_bits, check_weight, per_channel, register_quantizer, ste, to_channels

__all__ = ["Log2WeightQuant", "log2_codes", "log2_dequantize", "log2_quantize", "log2_scale"]


def _max_code(bits: int) -> int:
    return 2 ** (check_bits(bits, "weight bits") - 1) - 1


def _magnitude_codes(a: Tensor, bits: int) -> Tensor:
    """Nearest-level magnitude code m (0..M) of ``a = |w| / scale`` (float tensor)."""
    M = _max_code(bits)
    mant, ex = torch.frexp(a)                      # a = mant * 2^ex, mant in [0.5, 1)
    e = torch.where(mant >= 0.75, ex, ex - 1)      # exponent of the nearest power of two
    m = (1 - e).clamp(1, M)
    return torch.where(a < 2.0 ** -M, torch.zeros_like(m), m).to(torch.int32)


def log2_codes(w: Tensor, bits: int, scale: Tensor, dim: int | None = 0) -> Tensor:
    """Signed codes ``sign * m`` (int32, shaped like ``w``) for per-channel (C,) or per-tensor ``scale``."""
    s = per_channel(scale.to(w.dtype), w, dim)
    m = _magnitude_codes(w.detach().abs() / s, bits)
    return torch.where(w.detach() < 0, -m, m)


def log2_dequantize(codes: Tensor, scale: Tensor, dim: int | None = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float weights from :func:`log2_codes` output."""
    s = per_channel(scale.to(dtype), codes, dim)
    m = codes.abs().to(torch.int32)
    v = torch.ldexp(s.expand(m.shape).contiguous(), 1 - m)  # s * 2^-(m-1), exact (a power-of-two scaling)
    v = torch.where(m > 0, v, torch.zeros((), dtype=dtype, device=v.device))
    return torch.where(codes < 0, -v, v)


def log2_quantize(w: Tensor, bits: int, scale: Tensor, dim: int | None = 0) -> Tensor:
    """Fake-quantize ``w`` to signed powers of two below ``scale`` (straight-through inside [-scale, scale])."""
    s = per_channel(scale.to(w.dtype), w, dim)
    q = log2_dequantize(log2_codes(w, bits, scale, dim), scale, dim, w.dtype)
    return ste(w, q, -s, s)


@torch.no_grad()
def log2_scale(w: Tensor, bits: int, dim: int | None = 0, search: int = 8) -> Tensor:
    """Per-channel (C,) (or 0-d for ``dim=None``) scale minimising the squared error over
    ``max|w| * 2^(-t/search)``, t = 0..search-1; 1 for an all-zero channel."""
    x = to_channels(w.detach().float(), dim)
    m = x.abs().amax(1)
    m = torch.where(m > 0, m, torch.ones_like(m))
    best_s, best_e = m.clone(), None
    for t in range(max(1, int(search))):  # a handful of scale candidates, not a loop over weights or channels
        s = m * 2.0 ** (-t / max(1, int(search)))
        q = log2_dequantize(log2_codes(x, bits, s, 0), s, 0)
        e = ((q - x) ** 2).sum(1)
        if best_e is None:
            best_e = e
            continue
        better = e < best_e
        best_s = torch.where(better, s, best_s)
        best_e = torch.where(better, e, best_e)
    return best_s.reshape(()) if dim is None else best_s


@register_quantizer("log2")
class Log2WeightQuant(WeightFakeQuant):
    """Power-of-two weight parametrization with a frozen per-channel (or per-tensor) ``scale``.

    Spec: attrs ``bits``, ``dim``; tensor ``scale`` (+ bias correction). One b-bit code stream. Integer form for
    b <= 4. Joint candidate: the slow-varying parameter is the ratio scale / max|w| per row.
    """

    joint_candidate = True
    joint_param_default = 1.0

    def __init__(self, bits: int, scale: Tensor, *, dim: int | None = 0):
        super().__init__(bits, dim)
        s = torch.as_tensor(scale, dtype=torch.float32).detach().clone()
        self.register_buffer("scale", s.reshape(()) if dim is None else s.reshape(-1))

    @classmethod
    def from_weight(cls, w: Tensor, bits: int, *, dim: int | None = 0, search: int = 8,
                    name: str = "weight") -> Log2WeightQuant:
        """Fit the scale to ``w`` (:func:`log2_scale`); :class:`LayerError` naming ``name`` on bad input."""
        check_bits(bits, "weight bits")
        check_weight(w, name)
        return cls(bits, log2_scale(w, bits, dim, search), dim=dim)

    def quantize(self, w: Tensor) -> Tensor:
        return log2_quantize(w, self.bits, self.scale, self.dim)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        return {"codes": log2_codes(w.detach(), self.bits, self.scale, self.dim)}

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        return log2_dequantize(codes["codes"], self.scale, self.dim)

    def _state(self) -> dict[str, Tensor]:
        return {"scale": self.scale}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> Log2WeightQuant:
        return cls(int(attrs["bits"]), tensors["scale"], dim=attrs["dim"])

    def levels(self) -> Tensor:
        """Representable values per channel, (C, 2M + 1), sorted."""
        M = _max_code(self.bits)
        m = torch.arange(-M, M + 1, device=self.scale.device, dtype=torch.int32)
        s = self.scale.reshape(-1, 1)
        return log2_dequantize(m.expand(s.shape[0], -1), s.reshape(-1), 0).sort(1).values

    def int8_form(self, w: Tensor) -> IntForm | None:
        M = _max_code(self.bits)
        if M > 7 or self.bc_shift is not None or self.dim not in (0, None):
            return None
        c = self.codes(w)["codes"]
        mag = torch.where(c != 0, torch.ldexp(torch.ones_like(c, dtype=torch.float32), (M - c.abs())), 0.0)
        ints = (torch.sign(c).float() * mag).to(torch.int32)
        out = w.shape[0]
        s = self.scale.detach().float().reshape(-1)
        s = (s.expand(out) if s.numel() == 1 else s) * 2.0 ** -(M - 1)
        return IntForm(ints, s.clone(), torch.zeros(out, dtype=torch.int32), signed=True)

    @classmethod
    def joint_quantize(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None) -> Tensor:
        m = to_channels(w.detach(), dim).abs().amax(1)
        m = torch.where(m > 0, m, torch.ones_like(m))
        s = param.reshape(-1).to(w.dtype) * m
        return log2_quantize(w, bits, s.reshape(()) if dim is None else s, dim)

    @classmethod
    def joint_fit(cls, w: Tensor, bits: int, dim: int | None, name: str) -> Tensor | None:
        m = to_channels(w.detach().float(), dim).abs().amax(1)
        m = torch.where(m > 0, m, torch.ones_like(m))
        return (log2_scale(w, bits, dim).reshape(-1) / m).reshape(-1, 1)

    @classmethod
    def joint_fixed(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None,
                    name: str) -> Log2WeightQuant:
        m = to_channels(w.detach(), dim).abs().amax(1)
        m = torch.where(m > 0, m, torch.ones_like(m))
        s = param.reshape(-1).to(m.dtype) * m
        return cls(bits, s, dim=dim)

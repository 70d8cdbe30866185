"""Piecewise linear quantization (PWLQ, Fang et al. ECCV 2020; US20210133278A1).

The range [-m, m] (m = max|w| per channel) is cut at breakpoints 0 < p_1 < ... < p_n < m into a center
region |w| < p_1 and outer regions p_l <= |w| < p_(l+1) (the last one closed at m). Each piece is quantized
uniformly on |w|, sign kept, with K = 2^(b-1) - 1 steps:

* ``variant="paper"`` (eq. 3): every region, center included, is ``lo + k (hi - lo) / K``, k = 0..K, i.e.
  (b-1) bits of magnitude plus the sign. Eq. 4 gives its expected error exactly.
* ``variant="b_center"`` (default; the reference code's "pw-2"): the center is a b-bit symmetric grid with step
  ``2 p_1 / (2^b - 1)`` (levels up to just below p_1), the outer pieces are as above. Same storage (one b-bit
  code + region id), two more levels per channel, lower MSE (see docs/pwlq.md), and it is the variant behind
  every published PWLQ number.

Storage: each weight becomes a b-bit signed code ``c`` (``k`` if w >= 0, else ``-k-1``) plus a region id
(0..n). :func:`pwlq_dequantize` rebuilds the exact float values from codes, breakpoints and m.
Work is vectorized over channels: breakpoints are (C, n), m is (C,). The functional math lives in
:mod:`.pwlq_ops` (shared with the breakpoint search); this module keeps the quantizer class.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import IntForm, RegionForm, WeightFakeQuant, check_weight, register_quantizer, to_channels
from .breakpoints import SEARCH_RANGE, find_breakpoints
from .pwlq_ops import (  # noqa: F401 - re-exported: the functional API's old home
    MAX_BREAKPOINTS,
    VARIANTS,
    as_breakpoints,
    bounds,
    check_variant,
    magnitude_cells,
    magnitude_quant,
    pwlq_codes,
    pwlq_dequantize,
    pwlq_level_count,
    pwlq_levels,
    pwlq_quantize,
    region_bits,
    region_steps,
)

_as_breakpoints = as_breakpoints  # old private names, kept for callers outside the package
_magnitude_quant = magnitude_quant


@register_quantizer("pwlq")
class PWLQWeightQuant(WeightFakeQuant):
    """PWLQ weight parametrization with frozen per-channel breakpoints (C, n) and range m (C,).

    Spec: attrs ``bits``, ``dim``, ``variant``; tensors ``breakpoints``, ``max_abs`` (+ bias correction).
    Code streams: ``codes`` (b bits) and ``region`` (ceil(log2(n+1)) bits). No single int8 form; the int8
    branch decomposition (:meth:`int8_branches`) serves the int8 kernels and ONNX Q/DQ.
    """

    joint_candidate = True
    joint_param_default = 0.25  # p/m before the first breakpoint fit

    def __init__(self, bits: int, breakpoints: Tensor, max_abs: Tensor, *, variant: str = "b_center",
                 dim: int | None = 0):
        super().__init__(bits, dim)
        self.variant = check_variant(variant)
        m = torch.as_tensor(max_abs, dtype=torch.float32).reshape(-1).detach().clone()
        p = _as_breakpoints(breakpoints, m.numel(), m.device, torch.float32).detach().clone()
        bounds(p, m)
        self.register_buffer("breakpoints", p)
        self.register_buffer("max_abs", m)

    @property
    def n_breakpoints(self) -> int:
        return self.breakpoints.shape[1]

    @classmethod
    def from_weight(cls, w: Tensor, bits: int, *, method: str = "empirical", n_breakpoints: int = 1,
                    variant: str = "b_center", dim: int | None = 0, name: str = "weight",
                    ratio_range: tuple[float, float] = SEARCH_RANGE, search: str = "auto") -> PWLQWeightQuant:
        """Find breakpoints for ``w`` with :func:`~prunequant.quantization.breakpoints.find_breakpoints`."""
        check_weight(w, name)
        p = find_breakpoints(w.detach(), bits, method=method, n_breakpoints=n_breakpoints, variant=variant,
                             dim=dim, name=name, ratio_range=ratio_range, search=search)
        m = to_channels(w.detach(), dim).abs().amax(1)
        return cls(bits, p, m, variant=variant, dim=dim)

    def quantize(self, w: Tensor) -> Tensor:
        return pwlq_quantize(w, self.bits, self.breakpoints.to(w.dtype), self.max_abs.to(w.dtype),
                             variant=self.variant, dim=self.dim)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        return pwlq_codes(w, self.bits, self.breakpoints.to(w.dtype), self.max_abs.to(w.dtype),
                          variant=self.variant, dim=self.dim)

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        return pwlq_dequantize(codes["codes"], codes["region"], self.bits, self.breakpoints, self.max_abs,
                               variant=self.variant, dim=self.dim)

    def _state(self) -> dict[str, Tensor]:
        return {"breakpoints": self.breakpoints, "max_abs": self.max_abs}

    def levels(self) -> Tensor:
        """Representable values per channel, (C, L)."""
        return pwlq_levels(self.bits, self.breakpoints, self.max_abs, self.variant)

    def center_fraction(self, w: Tensor) -> float:
        """Fraction of weights in the center region |w| < p_1."""
        x = to_channels(w.detach(), self.dim).abs()
        return float((x < self.breakpoints[:, :1].to(x.dtype)).float().mean())

    # -- quantizer protocol (core/quantizer.py) ---------------------------------------------------------
    def _attrs(self) -> dict:
        return {"variant": self.variant}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> PWLQWeightQuant:
        return cls(int(attrs["bits"]), tensors["breakpoints"], tensors["max_abs"], variant=attrs["variant"],
                   dim=attrs["dim"])

    def code_bits(self) -> dict[str, int]:
        return {"codes": int(self.bits), "region": region_bits(self.n_breakpoints)}

    def describe(self, w: Tensor) -> dict:
        ratio = (self.breakpoints / self.max_abs.clamp(min=1e-30)[:, None]).mean(0).tolist()
        return {"n_breakpoints": self.n_breakpoints, "breakpoint_ratio": [round(float(x), 5) for x in ratio],
                "center_fraction": self.center_fraction(w)}

    def region_form(self, w: Tensor) -> RegionForm | None:
        """Codes, region ids, per-region steps and lower bounds (the weight-only kernel's layout)."""
        c = self.codes(w)
        P = bounds(self.breakpoints, self.max_abs)
        return RegionForm(c["codes"], c["region"], region_steps(P, self.bits, self.variant), P[:, :-1])

    def int8_branches(self, w: Tensor) -> list[IntForm] | None:
        """The paper's accumulator split as int8 forms whose dequantized sum is ``forward(w)`` (up to the float
        rounding of the sum): per region r ``sign*k`` scaled by its step, plus for r >= 1 the sign scaled by
        p_r. ``None`` with bias correction, > 8 bits or a channel axis other than 0."""
        if self.bc_shift is not None or self.bits > 8 or self.dim not in (0, None):
            return None
        c = self.codes(w)
        code, region = c["codes"].long(), c["region"].long()
        out = w.shape[0]
        P = bounds(self.breakpoints, self.max_abs)
        steps = region_steps(P, self.bits, self.variant)
        neg = code < 0
        k = torch.where(neg, -code - 1, code)
        sign = torch.where(neg, -1, 1)
        zp = torch.zeros(out, dtype=torch.int32)
        forms = []
        for r in range(steps.shape[1]):  # <= 4 regions, not a loop over weights or channels
            forms.append((torch.where(region == r, sign * k, 0), steps[:, r]))
        for r in range(1, steps.shape[1]):
            forms.append((torch.where(region == r, sign, 0), P[:, r]))
        view = [-1] + [1] * (w.dim() - 1)
        return [IntForm(torch.where(s.expand(out).reshape(view) > 0, cd, 0).to(torch.int32),  # m = 0: all zero
                        torch.where(s > 0, s, torch.ones_like(s)).float().expand(out).clone(), zp, signed=True)
                for cd, s in forms]

    @classmethod
    def joint_quantize(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None) -> Tensor:
        m = to_channels(w.detach(), dim).abs().amax(1)
        return pwlq_quantize(w, bits, param.to(w.dtype) * m[:, None], m, dim=dim)

    @classmethod
    def joint_fit(cls, w: Tensor, bits: int, dim: int | None, name: str) -> Tensor | None:
        p = find_breakpoints(w.detach().float(), bits, method="empirical", dim=dim, name=name)
        m = to_channels(w.detach().float(), dim).abs().amax(1)
        return torch.where(m[:, None] > 0, p / m.clamp(min=1e-30)[:, None],
                           torch.full_like(p, cls.joint_param_default))

    @classmethod
    def joint_fixed(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None,
                    name: str) -> PWLQWeightQuant:
        m = to_channels(w.detach(), dim).abs().amax(1)
        return cls(bits, param.to(m.dtype) * m[:, None], m, dim=dim)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant}, n_breakpoints={self.n_breakpoints}"

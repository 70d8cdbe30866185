"""Group-wise weight-only quantization (uniform affine and PWLQ), as LLM weight-only schemes do it.

A weight of shape (N, K...) is viewed as (N, K) with K the flattened input dimension, and each row is cut into
``G = K / g`` contiguous groups of ``g`` input elements (``group_size`` g = 32, 64, 128 ...). Every group gets
its own parameters; all work is done on the (N*G, g) view, so it is vectorized over groups (one "channel" of
the per-channel code per group).

* **uniform affine** (the scheme of torchao's int4 weight-only, asymmetric): for group j with
  ``lo_j = min(w_j, 0)``, ``hi_j = max(w_j, 0)``: ``s_j = (hi_j - lo_j) / (2^b - 1)`` (stored as float16,
  rounded up so the range stays covered), integer zero point ``z_j = round(-lo_j / s_j)`` in [0, 2^b - 1],
  codes ``q = clamp(round(w / s_j) + z_j, 0, 2^b - 1)``, ``w_hat = s_j (q - z_j)``.
* **PWLQ** (see :mod:`prunequant.quantization.pwlq`): per group the range ``m_j = max|w_j|`` and breakpoints
  ``p_j`` (found by the usual search on the group's own weights); each weight is a b-bit code plus a region id.
  ``m_j`` and ``p_j`` are stored as float16 (``m_j`` rounded up, ``0 < p_j < m_j`` kept).

Storage (all-in bits per weight, :func:`bits_per_weight`): ``sum(code bits) + (bits of every stored parameter
tensor) / numel``. Uniform: ``b + (16 + 8) / g`` (fp16 scale + uint8 zero point per group); PWLQ with one
breakpoint: ``b + 1 + (16 + 16) / g``. Parameters are rounded to float16 *before* the codes are computed, so
decoding the stored codes with the stored parameters gives exactly the fake-quantized weight.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, LayerError, ShapeError
from .base import WeightFakeQuant, check_bits, check_weight, register_quantizer, ste

PARAM_DTYPE = torch.float16
GROUP_SIZES = (32, 64, 128)


def check_group_size(group_size, in_features: int, name: str = "tensor") -> int:
    """Return ``group_size`` if it is a positive integer dividing ``in_features``; else raise."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"group_size must be a positive integer, got {group_size!r}")
    if in_features % group_size:
        raise LayerError(f"{name}: input dimension {in_features} is not a multiple of group_size {group_size}")
    return group_size


def to_groups(w: Tensor, group_size: int, name: str = "tensor") -> Tensor:
    """View ``w`` (N, K...) as (N * K/g, g): contiguous groups of ``g`` along the flattened input dimension."""
    if w.dim() < 2:
        raise ShapeError(f"{name}: group-wise quantization needs a weight with >= 2 dims, got {tuple(w.shape)}")
    K = w[0].numel()
    check_group_size(group_size, K, name)
    return w.reshape(-1, group_size)


def from_groups(x: Tensor, like: Tensor) -> Tensor:
    """Inverse of :func:`to_groups`."""
    return x.reshape(like.shape)


def fp16_up(x: Tensor) -> Tensor:
    """Smallest float16 value >= ``x`` (elementwise, x >= 0), returned in float32."""
    y = x.to(PARAM_DTYPE)
    low = y.float() < x
    if bool(low.any()):
        y = torch.where(low, torch.nextafter(y, torch.full_like(y, float("inf"))), y)
    return y.float()


def fp16_down(x: Tensor) -> Tensor:
    """Largest float16 value <= ``x`` (elementwise), returned in float32."""
    y = x.to(PARAM_DTYPE)
    high = y.float() > x
    if bool(high.any()):
        y = torch.where(high, torch.nextafter(y, torch.full_like(y, float("-inf"))), y)
    return y.float()


# ---------------------------------------------------------------------------------------------------------
# uniform affine, per group
# ---------------------------------------------------------------------------------------------------------
def group_affine_qparams(w: Tensor, bits: int, group_size: int, name: str = "tensor") -> tuple[Tensor, Tensor]:
    """(scale float16 (N*G,), zero_point uint8 (N*G,)) of b-bit asymmetric codes per group."""
    check_bits(bits)
    if bits > 8:
        raise ConfigError(f"group-wise uniform codes are stored in uint8; bits must be <= 8, got {bits}")
    x = to_groups(w.detach().float(), group_size, name)
    lo, hi = x.amin(1).clamp(max=0), x.amax(1).clamp(min=0)
    qmax = 2 ** bits - 1
    s = fp16_up((hi - lo) / qmax)
    s = torch.where(s > 0, s, torch.ones_like(s))
    zp = torch.round(-lo / s).clamp(0, qmax)
    return s.to(PARAM_DTYPE), zp.to(torch.uint8)


def group_symmetric_scale(w: Tensor, bits: int, group_size: int, name: str = "tensor") -> Tensor:
    """float16 scale ``2 max|w_j| / (2^b - 1)`` (rounded up) per group, for signed codes with zero point 0."""
    check_bits(bits)
    if bits > 8:
        raise ConfigError(f"group-wise uniform codes are stored in int8; bits must be <= 8, got {bits}")
    x = to_groups(w.detach().float(), group_size, name)
    s = fp16_up(2 * x.abs().amax(1) / (2 ** bits - 1))
    return torch.where(s > 0, s, torch.ones_like(s)).to(PARAM_DTYPE)


def _qrange(bits: int, zero_point: Tensor | None) -> tuple[int, int]:
    return (0, 2 ** bits - 1) if zero_point is not None else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def group_uniform_codes(w: Tensor, bits: int, scale: Tensor, zero_point: Tensor | None, group_size: int) -> Tensor:
    """Codes (shape of ``w``) for per-group ``scale`` / ``zero_point`` (N*G,): uint8 in [0, 2^b - 1] (affine), or
    int8 in [-2^(b-1), 2^(b-1) - 1] when ``zero_point`` is None (symmetric)."""
    x = to_groups(w.detach().float(), group_size)
    qmin, qmax = _qrange(bits, zero_point)
    z = 0.0 if zero_point is None else zero_point.float()[:, None]
    q = (torch.round(x / scale.float()[:, None]) + z).clamp(qmin, qmax)
    return from_groups(q.to(torch.uint8 if zero_point is not None else torch.int8), w)


def group_uniform_dequantize(codes: Tensor, scale: Tensor, zero_point: Tensor | None, group_size: int,
                             dtype: torch.dtype = torch.float32) -> Tensor:
    """``scale_j * (codes - zero_point_j)`` per group (shape of ``codes``)."""
    c = to_groups(codes.float(), group_size)
    z = 0.0 if zero_point is None else zero_point.float()[:, None]
    return from_groups(((c - z) * scale.float()[:, None]).to(dtype), codes)


def group_uniform_quantize(w: Tensor, bits: int, scale: Tensor, zero_point: Tensor | None,
                           group_size: int) -> Tensor:
    """Fake-quantize ``w`` (straight-through gradient inside each group's range, zero where clipped)."""
    x = to_groups(w, group_size)
    s = scale.to(w.dtype)[:, None]
    z = torch.zeros_like(s) if zero_point is None else zero_point.to(w.dtype)[:, None]
    qmin, qmax = _qrange(bits, zero_point)
    q = (torch.round(x.detach() / s) + z).clamp(qmin, qmax)
    out = ste(x, (q - z) * s, (qmin - z - 0.5) * s, (qmax - z + 0.5) * s)
    return from_groups(out, w)


# ---------------------------------------------------------------------------------------------------------
# PWLQ, per group
# ---------------------------------------------------------------------------------------------------------
def group_pwlq_params(w: Tensor, bits: int, group_size: int, *, method: str = "empirical",
                      n_breakpoints: int = 1, variant: str = "b_center", name: str = "tensor",
                      **search) -> tuple[Tensor, Tensor]:
    """(breakpoints float16 (N*G, n), max_abs float16 (N*G,)) for PWLQ of each group of ``w``.

    Breakpoints come from :func:`~prunequant.quantization.breakpoints.find_breakpoints` on the group view
    (one search per group, vectorized; ``search`` keywords such as ``ratio_range``, ``search`` are passed on);
    both are then rounded to float16 keeping ``0 < p_1 < ... < p_n < m``.
    """
    from .breakpoints import find_breakpoints

    check_bits(bits)
    x = to_groups(w.detach().float(), group_size, name)
    search = {k: v for k, v in search.items() if v is not None}
    p = find_breakpoints(x, bits, method=method, n_breakpoints=n_breakpoints, variant=variant, dim=0, name=name,
                         **search)
    m = fp16_up(x.abs().amax(1))
    p = fp16_down(p.float().clamp(max=m[:, None]))
    # keep strict order after rounding: nudge up from 0, and below the next bound
    tiny = torch.finfo(PARAM_DTYPE).tiny
    nz = m > 0
    for l in range(p.shape[1]):  # n <= 3 breakpoints, not a loop over groups
        upper = m if l == p.shape[1] - 1 else p[:, l + 1]
        lower = torch.zeros_like(m) if l == 0 else p[:, l - 1]
        pl = torch.maximum(p[:, l], fp16_up(lower + tiny))
        pl = torch.where(pl >= upper, fp16_down(upper - upper * 1e-3), pl)
        p[:, l] = torch.where(nz, pl, torch.zeros_like(pl))
    bad = nz & ~((p[:, 0] > 0) & (p[:, -1] < m))
    if bool(bad.any()):  # a group whose range is a few fp16 ulps wide: fall back to evenly spaced in fp32
        raise LayerError(f"{name}: group {int(bad.nonzero()[0, 0])} has a range too small for float16 "
                         f"breakpoints (max|w| = {float(m[bad][0]):.3g})")
    return p.to(PARAM_DTYPE), m.to(PARAM_DTYPE)


def group_pwlq_quantize(w: Tensor, bits: int, breakpoints: Tensor, max_abs: Tensor, group_size: int, *,
                        variant: str = "b_center") -> Tensor:
    """Fake-quantize ``w`` with per-group PWLQ parameters (straight-through gradient)."""
    from .pwlq_ops import pwlq_quantize

    x = to_groups(w, group_size)
    q = pwlq_quantize(x, bits, breakpoints.to(w.dtype), max_abs.to(w.dtype), variant=variant, dim=0)
    return from_groups(q, w)


def group_pwlq_codes(w: Tensor, bits: int, breakpoints: Tensor, max_abs: Tensor, group_size: int, *,
                     variant: str = "b_center") -> dict[str, Tensor]:
    """``{"codes": int8 b-bit signed codes, "region": uint8 region ids}`` shaped like ``w``."""
    from .pwlq_ops import pwlq_codes

    x = to_groups(w.detach().float(), group_size)
    c = pwlq_codes(x, bits, breakpoints.float(), max_abs.float(), variant=variant, dim=0)
    return {"codes": from_groups(c["codes"].to(torch.int8), w), "region": from_groups(c["region"], w)}


def group_pwlq_dequantize(codes: Tensor, region: Tensor, bits: int, breakpoints: Tensor, max_abs: Tensor,
                          group_size: int, *, variant: str = "b_center", dtype: torch.dtype = torch.float32) -> Tensor:
    """Float weights from :func:`group_pwlq_codes` output (exactly :func:`group_pwlq_quantize`'s values)."""
    from .pwlq_ops import pwlq_dequantize

    c = to_groups(codes, group_size)
    r = to_groups(region, group_size)
    out = pwlq_dequantize(c, r, bits, breakpoints.float(), max_abs.float(), variant=variant, dim=0, dtype=dtype)
    return from_groups(out, codes)


# ---------------------------------------------------------------------------------------------------------
# storage accounting
# ---------------------------------------------------------------------------------------------------------
def bits_per_weight(code_bits: dict[str, int], params: dict[str, Tensor], numel: int) -> float:
    """All-in bits per weight: every code stream's bits plus every stored parameter tensor's bits, / numel."""
    if numel < 1:
        raise ShapeError("bits_per_weight needs numel >= 1")
    extra = sum(int(t.numel()) * t.element_size() * 8 for t in params.values() if t is not None)
    return float(sum(code_bits.values())) + extra / numel


def group_uniform_fit(w: Tensor, bits: int, group_size: int, name: str = "tensor") -> tuple[Tensor, float]:
    """Fit + fake-quantize ``w`` group-wise (uniform affine): (w_hat, all-in bits per weight)."""
    q = GroupUniformWeightQuant.from_weight(w, bits, group_size, name=name)
    return q(w.detach()), q.bits_per_weight(w.numel())


def group_pwlq_fit(w: Tensor, bits: int, group_size: int, *, method: str = "empirical", n_breakpoints: int = 1,
                   variant: str = "b_center", name: str = "tensor") -> tuple[Tensor, float]:
    """Fit + fake-quantize ``w`` group-wise (PWLQ): (w_hat, all-in bits per weight)."""
    q = GroupPWLQWeightQuant.from_weight(w, bits, group_size, method=method, n_breakpoints=n_breakpoints,
                                         variant=variant, name=name)
    return q(w.detach()), q.bits_per_weight(w.numel())


# ---------------------------------------------------------------------------------------------------------
# quantizer classes (parametrizations; quantizer protocol of prunequant.core.quantizer)
# ---------------------------------------------------------------------------------------------------------
class _GroupQuant(WeightFakeQuant):
    """Shared part of the group-wise quantizers: groups of ``group_size`` along the input dimension (dim 1 of
    the weight viewed as (N, K)); parameters per group, shape (N * K/g, ...). Optional bias correction stays
    per output channel (``dim = 0``), as in the base class, and is counted in :meth:`bits_per_weight`."""

    def __init__(self, bits: int, group_size: int):
        super().__init__(bits, 0)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ConfigError(f"group_size must be a positive integer, got {group_size!r}")
        self.group_size = group_size

    @property
    def granularity(self) -> str:
        return f"group{self.group_size}"

    def _check_shape(self, w: Tensor, n_groups: int) -> None:
        if w.numel() != n_groups * self.group_size:
            raise ShapeError(f"{self.scheme} quantizer holds {n_groups} groups of {self.group_size}, "
                             f"the weight has {w.numel()} elements (shape {tuple(w.shape)})")

    def bits_per_weight(self, numel: int) -> float:
        """All-in bits per weight: code streams plus every stored parameter (see :func:`bits_per_weight`)."""
        return bits_per_weight(self.code_bits(), self.export_state(), numel)

    def _attrs(self) -> dict:
        return {"group_size": self.group_size}

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scheme={self.scheme}, group_size={self.group_size}"


@register_quantizer("uniform-group")
class GroupUniformWeightQuant(_GroupQuant):
    """Uniform b-bit weights per group of ``group_size`` input elements: affine (default; fp16 scale + uint8
    zero point per group, torchao int4-weight-only style) or symmetric (fp16 scale only, signed codes).

    Spec: attrs ``bits``, ``dim`` (0), ``group_size``, ``symmetric``; tensors ``scale`` (fp16, (N*G,)) and, if
    affine, ``zero_point`` (uint8, (N*G,)). Code stream ``codes`` (b bits).

    Example:
        >>> import torch
        >>> w = torch.randn(8, 64)
        >>> q = GroupUniformWeightQuant.from_weight(w, 4, 32)
        >>> torch.equal(q.decode(q.codes(w)), q(w)), q.bits_per_weight(w.numel())
        (True, 4.75)
    """

    def __init__(self, bits: int, group_size: int, scale: Tensor, zero_point: Tensor | None = None):
        super().__init__(bits, group_size)
        if bits > 8:
            raise ConfigError(f"group-wise uniform codes are stored in 8-bit containers; bits must be <= 8, "
                              f"got {bits}")
        s = torch.as_tensor(scale).detach().reshape(-1).to(PARAM_DTYPE).clone()
        self.register_buffer("scale", s)
        z = None
        if zero_point is not None:
            z = torch.as_tensor(zero_point).detach().reshape(-1).to(torch.uint8).clone()
            if s.shape != z.shape:
                raise ShapeError(f"scale {tuple(s.shape)} and zero_point {tuple(z.shape)} must have one entry "
                                 "per group")
        self.register_buffer("zero_point", z)

    @property
    def symmetric(self) -> bool:
        return self.zero_point is None

    @classmethod
    def from_weight(cls, w: Tensor, bits: int, group_size: int, *, symmetric: bool = False,
                    name: str = "weight") -> GroupUniformWeightQuant:
        """Fit per-group scale (and zero point unless ``symmetric``) to ``w``; errors name ``name``."""
        check_bits(bits, "weight bits")
        check_weight(w, name)
        if symmetric:
            return cls(bits, group_size, group_symmetric_scale(w, bits, group_size, name), None)
        s, z = group_affine_qparams(w, bits, group_size, name)
        return cls(bits, group_size, s, z)

    def quantize(self, w: Tensor) -> Tensor:
        self._check_shape(w, self.scale.numel())
        return group_uniform_quantize(w, self.bits, self.scale, self.zero_point, self.group_size)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        self._check_shape(w, self.scale.numel())
        return {"codes": group_uniform_codes(w, self.bits, self.scale, self.zero_point, self.group_size)}

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        return group_uniform_dequantize(codes["codes"], self.scale, self.zero_point, self.group_size)

    def _state(self) -> dict[str, Tensor]:
        return {"scale": self.scale} if self.zero_point is None else {"scale": self.scale,
                                                                       "zero_point": self.zero_point}

    def _attrs(self) -> dict:
        return {"group_size": self.group_size, "symmetric": self.symmetric}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> GroupUniformWeightQuant:
        zp = None if attrs.get("symmetric", False) else tensors["zero_point"]
        return cls(int(attrs["bits"]), int(attrs["group_size"]), tensors["scale"], zp)


@register_quantizer("pwlq-group")
class GroupPWLQWeightQuant(_GroupQuant):
    """PWLQ weights with an fp16 range ``max_abs`` and fp16 breakpoints per group of ``group_size`` input
    elements; each weight is a b-bit signed code plus a region id.

    Spec: attrs ``bits``, ``dim`` (0), ``group_size``, ``variant``; tensors ``breakpoints`` (fp16, (N*G, n)),
    ``max_abs`` (fp16, (N*G,)). Code streams ``codes`` (b bits) and ``region`` (ceil(log2(n+1)) bits).

    Example:
        >>> import torch
        >>> w = torch.randn(8, 64)
        >>> q = GroupPWLQWeightQuant.from_weight(w, 3, 64)
        >>> c = q.codes(w)
        >>> torch.equal(q.decode(c), q(w)), q.bits_per_weight(w.numel())
        (True, 4.5)
    """

    def __init__(self, bits: int, group_size: int, breakpoints: Tensor, max_abs: Tensor, *,
                 variant: str = "b_center"):
        super().__init__(bits, group_size)
        from .pwlq_ops import as_breakpoints, bounds, check_variant

        self.variant = check_variant(variant)
        m = torch.as_tensor(max_abs).detach().reshape(-1).to(PARAM_DTYPE).clone()
        p = as_breakpoints(torch.as_tensor(breakpoints).detach(), m.numel(), m.device, PARAM_DTYPE).clone()
        bounds(p.float(), m.float(), "pwlq-group quantizer")
        self.register_buffer("breakpoints", p)
        self.register_buffer("max_abs", m)

    @property
    def n_breakpoints(self) -> int:
        return self.breakpoints.shape[1]

    @classmethod
    def from_weight(cls, w: Tensor, bits: int, group_size: int, *, method: str = "empirical",
                    n_breakpoints: int = 1, variant: str = "b_center", name: str = "weight",
                    ratio_range: tuple[float, float] | None = None,
                    search: str | None = None) -> GroupPWLQWeightQuant:
        """Search per-group breakpoints for ``w`` (:func:`group_pwlq_params`; ``ratio_range``/``search`` as in
        ``find_breakpoints``, None = its defaults); errors name ``name``."""
        check_bits(bits, "weight bits")
        check_weight(w, name)
        p, m = group_pwlq_params(w, bits, group_size, method=method, n_breakpoints=n_breakpoints, variant=variant,
                                 name=name, ratio_range=ratio_range, search=search)
        return cls(bits, group_size, p, m, variant=variant)

    def quantize(self, w: Tensor) -> Tensor:
        self._check_shape(w, self.max_abs.numel())
        return group_pwlq_quantize(w, self.bits, self.breakpoints, self.max_abs, self.group_size,
                                   variant=self.variant)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        self._check_shape(w, self.max_abs.numel())
        return group_pwlq_codes(w, self.bits, self.breakpoints, self.max_abs, self.group_size, variant=self.variant)

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        return group_pwlq_dequantize(codes["codes"], codes["region"], self.bits, self.breakpoints, self.max_abs,
                                     self.group_size, variant=self.variant)

    def _state(self) -> dict[str, Tensor]:
        return {"breakpoints": self.breakpoints, "max_abs": self.max_abs}

    def _attrs(self) -> dict:
        return {"group_size": self.group_size, "variant": self.variant}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> GroupPWLQWeightQuant:
        return cls(int(attrs["bits"]), int(attrs["group_size"]), tensors["breakpoints"], tensors["max_abs"],
                   variant=attrs.get("variant", "b_center"))

    def code_bits(self) -> dict[str, int]:
        from .pwlq_ops import region_bits

        return {"codes": int(self.bits), "region": region_bits(self.n_breakpoints)}


__all__ = [
    "GroupPWLQWeightQuant",
    "GroupUniformWeightQuant",
    "GROUP_SIZES",
    "PARAM_DTYPE",
    "bits_per_weight",
    "check_group_size",
    "from_groups",
    "group_affine_qparams",
    "group_pwlq_codes",
    "group_pwlq_dequantize",
    "group_pwlq_fit",
    "group_pwlq_params",
    "group_pwlq_quantize",
    "group_symmetric_scale",
    "group_uniform_codes",
    "group_uniform_dequantize",
    "group_uniform_fit",
    "group_uniform_quantize",
    "to_groups",
]

"""The quantizer protocol: what every weight / activation fake-quantizer declares, and the quantizer registry.

A weight quantizer is a ``torch.nn.utils.parametrize`` parametrization (:class:`WeightFakeQuant`) whose
``forward(w)`` returns the fake-quantized weight. Besides the maths it declares, so that nothing outside its own
module needs to know its class:

* ``spec()`` / ``from_spec(spec)``: its serialisable state, a :class:`QuantSpec` (``scheme`` name, JSON-able
  ``attrs``, named ``tensors``). ``quantizer_from_spec(q.spec())`` rebuilds a quantizer whose forward is
  bit-identical (the artifact, ``prunequant.save`` and ``io`` use this; no ``vars()`` or class paths).
* ``codes(w)`` / ``decode(codes)``: the integer code streams and their exact inverse; ``code_bits()`` the bits per
  element of each stream (what storage costs, :mod:`prunequant.core.cost`).
* ``int8_form(w)``: where one exists, an :class:`IntForm` (integer codes of at most 8 bits + per-output-channel
  scale and zero point) whose dequantization equals ``forward(w)`` exactly; ``None`` otherwise. Deployment
  (int8 kernels, ONNX Q/DQ, weight-only kernels) uses it instead of ``isinstance`` chains.
* optionally the joint-candidate hooks (``joint_quantize`` / ``joint_fit`` / ``joint_fixed``), which let the
  joint method mix this scheme with others without knowing it.

``@register_quantizer("scheme")`` adds a class to the registry; :func:`quantizer_from_spec` and
:func:`quantizer_class` look classes up by scheme. :class:`ActFakeQuant` (uniform activation quantizer at a layer
input) has the same ``spec()`` / ``from_spec()``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, StorageError
from .checks import MAX_BITS, MIN_BITS, check_bits, check_weight

__all__ = [
    "ACT_GRANULARITIES",
    "MAX_BITS",
    "MIN_BITS",
    "ActFakeQuant",
    "IntForm",
    "QuantSpec",
    "RegionForm",
    "WeightFakeQuant",
    "act_channel_dim",
    "attach_input_quant",
    "check_bits",
    "check_weight",
    "detach_input_quant",
    "from_channels",
    "per_channel",
    "quantizer_class",
    "quantizer_from_spec",
    "register_quantizer",
    "registered_schemes",
    "ste",
    "to_channels",
]


# --------------------------------------------------------------------------------------------- tensor helpers
def to_channels(w: Tensor, dim: int | None) -> Tensor:
    """View ``w`` as (C, K): one row per slice along ``dim`` (per channel), or (1, N) when ``dim`` is None."""
    if dim is None:
        return w.reshape(1, -1)
    if w.dim() == 0:
        raise ConfigError("a 0-d tensor has no channel dimension; use dim=None")
    return w.movedim(dim, 0).reshape(w.shape[dim], -1)


def from_channels(x: Tensor, like: Tensor, dim: int | None) -> Tensor:
    """Inverse of :func:`to_channels`: reshape (C, K) back to the shape of ``like``."""
    if dim is None:
        return x.reshape(like.shape)
    moved = like.movedim(dim, 0).shape
    return x.reshape(moved).movedim(0, dim)


def per_channel(v: Tensor, like: Tensor, dim: int | None) -> Tensor:
    """Reshape a per-channel vector (C,) (or a scalar for ``dim=None``) to broadcast against ``like``."""
    if dim is None:
        return v.reshape(())
    shape = [1] * like.dim()
    shape[dim] = -1
    return v.reshape(shape)


def ste(w: Tensor, q: Tensor, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """Straight-through estimator: value exactly ``q``, gradient 1 w.r.t. ``w`` inside [lo, hi] and 0 outside.

    Written as ``q + (w - w.detach())`` (not ``w + (q - w).detach()``, which is off by rounding)."""
    if lo is not None:
        w = torch.maximum(torch.minimum(w, hi), lo)
    return q.detach() + (w - w.detach())


# --------------------------------------------------------------------------------------------- spec / int form
@dataclass
class QuantSpec:
    """Serialisable state of a quantizer: ``scheme`` (registry key), JSON-able ``attrs``, named ``tensors``."""

    scheme: str
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor:
        """The tensor ``name``; :class:`StorageError` naming the scheme when it is missing."""
        if name not in self.tensors:
            raise StorageError(f"{self.scheme} quantizer spec lacks tensor {name!r} (has {sorted(self.tensors)})")
        return self.tensors[name]

    def attr(self, name: str) -> Any:
        if name not in self.attrs:
            raise StorageError(f"{self.scheme} quantizer spec lacks attribute {name!r} (has {sorted(self.attrs)})")
        return self.attrs[name]


@dataclass
class IntForm:
    """Integer form of a quantized weight: ``w = scale * (codes - zero_point)`` per output channel (dim 0).

    ``codes`` (int32, the weight's shape) lie in ``[qmin, qmax]`` with ``qmax - qmin < 256``; ``signed`` says
    whether an int8 (True) or uint8 (False) container holds them. ``scale`` (C,) float32, ``zero_point`` (C,)
    int32. :meth:`dequantize` equals the quantizer's ``forward(w)`` bit for bit.
    """

    codes: Tensor
    scale: Tensor
    zero_point: Tensor
    signed: bool

    @property
    def qmin(self) -> int:
        return -128 if self.signed else 0

    @property
    def qmax(self) -> int:
        return 127 if self.signed else 255

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        c = self.codes.to(dtype)
        shape = [-1] + [1] * (c.dim() - 1)
        return (c - self.zero_point.to(dtype).reshape(shape)) * self.scale.to(dtype).reshape(shape)

    def masked(self, keep: Tensor) -> IntForm:
        """The same form with positions where ``keep`` is False set to the zero point (weights pruned after
        quantizing decode to exact zeros)."""
        zp = self.zero_point.reshape([-1] + [1] * (self.codes.dim() - 1)).to(self.codes.dtype)
        codes = torch.where(keep.to(self.codes.device), self.codes, zp.expand_as(self.codes))
        return IntForm(codes, self.scale, self.zero_point, self.signed)


@dataclass
class RegionForm:
    """Piecewise-uniform form (PWLQ): sign-magnitude ``codes`` (``k`` or ``-k-1``), ``region`` ids, and per channel
    ``step`` (C, R) and ``lower`` (C, R) so that ``v = lower[r] + k * step[r]``, ``w = v`` or ``-v`` by sign
    (exact for the grid points; the top of a region equals the next lower bound)."""

    codes: Tensor
    region: Tensor
    step: Tensor
    lower: Tensor


# --------------------------------------------------------------------------------------------- registry
_QUANTIZERS: dict[str, type] = {}


def register_quantizer(scheme: str):
    """Class decorator: register a :class:`WeightFakeQuant` subclass under ``scheme`` (sets ``cls.scheme``).

    Example:
        >>> @register_quantizer("my-doc-example")
        ... class MyQuant(WeightFakeQuant):
        ...     pass
        >>> quantizer_class("my-doc-example") is MyQuant
        True
    """
    if not isinstance(scheme, str) or not scheme:
        raise ConfigError(f"quantizer scheme must be a non-empty string, got {scheme!r}")

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, (WeightFakeQuant, ActFakeQuant))):
            raise ConfigError(f"{cls!r} is not a WeightFakeQuant/ActFakeQuant subclass")
        old = _QUANTIZERS.get(scheme)
        if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
            raise ConfigError(f"quantizer scheme {scheme!r} already registered by {old.__qualname__}")
        cls.scheme = scheme
        _QUANTIZERS[scheme] = cls
        return cls

    return deco


def quantizer_class(scheme: str) -> type:
    """The class registered under ``scheme``; :class:`ConfigError` listing the known schemes otherwise."""
    cls = _QUANTIZERS.get(scheme)
    if cls is None:
        raise ConfigError(f"unknown quantizer scheme {scheme!r}; registered: {sorted(_QUANTIZERS)} (import the "
                          "package that defines it, e.g. prunequant.quantization)")
    return cls


def registered_schemes(*, joint: bool | None = None) -> tuple[str, ...]:
    """Registered weight-quantizer schemes (``joint=True``: only those usable as joint candidates)."""
    out = []
    for s, cls in _QUANTIZERS.items():
        if not issubclass(cls, WeightFakeQuant):
            continue
        if joint is not None and bool(cls.joint_candidate) != joint:
            continue
        out.append(s)
    return tuple(out)


def quantizer_from_spec(spec: QuantSpec):
    """Rebuild a quantizer from :meth:`WeightFakeQuant.spec` / :meth:`ActFakeQuant.spec` output.

    Raises :class:`StorageError` for an unknown scheme or a spec that does not fit the class."""
    if not isinstance(spec, QuantSpec):
        raise StorageError(f"expected a QuantSpec, got {type(spec).__name__}")
    cls = _QUANTIZERS.get(spec.scheme)
    if cls is None:
        raise StorageError(f"unknown quantizer scheme {spec.scheme!r}; registered: {sorted(_QUANTIZERS)}")
    try:
        return cls.from_spec(spec)
    except KeyError as e:
        raise StorageError(f"{spec.scheme} quantizer spec lacks {e.args[0]!r} (attrs {sorted(spec.attrs)}, "
                           f"tensors {sorted(spec.tensors)})") from e
    except (TypeError, ValueError, RuntimeError, ConfigError) as e:
        raise StorageError(f"{spec.scheme} quantizer spec cannot be rebuilt: {e}") from e


def _json_attr(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_json_attr(x) for x in v]
    raise ConfigError(f"quantizer attribute {v!r} is not JSON-able")


# --------------------------------------------------------------------------------------------- weights
class WeightFakeQuant(nn.Module):
    """Base weight parametrization: ``forward(w)`` returns the fake-quantized weight (straight-through gradient).

    Subclasses implement ``quantize``, ``codes``, ``_decode_raw``, ``_state`` (tensors besides the codes),
    ``_attrs`` (JSON-able constructor attributes besides ``bits``/``dim``) and ``_build(attrs, tensors)``; they
    may override ``code_bits``, ``int8_form`` and the joint hooks. Quantizer state lives in buffers. Optional
    per-channel bias correction (``bc_shift``, ``bc_gain``) is applied after quantization: ``(q + shift) * gain``.
    """

    scheme: str = "base"
    joint_candidate: bool = False     # usable as a candidate of the joint soft mixture
    joint_param_default: float | None = None  # one slow-varying float per scale row (e.g. PWLQ's p/m)

    def __init__(self, bits: int | None, dim: int | None):
        super().__init__()
        if bits is not None:
            self.bits = check_bits(bits, "weight bits")
        if dim not in (None, 0, 1):
            raise ConfigError(f"quantizer dim must be None, 0 or 1, got {dim!r}")
        self.dim = dim
        self.register_buffer("bc_shift", None)
        self.register_buffer("bc_gain", None)

    @property
    def granularity(self) -> str:
        return "tensor" if self.dim is None else "channel"

    # -- to implement -----------------------------------------------------------------------------------
    def quantize(self, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Fake-quantize ``w`` without bias correction (straight-through gradient)."""
        raise NotImplementedError

    def codes(self, w: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Integer code streams of ``w`` (each shaped like ``w``); :meth:`decode` maps them to ``forward(w)``."""
        raise NotImplementedError

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state(self) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _attrs(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _build(cls, attrs: dict[str, Any], tensors: dict[str, Tensor]) -> WeightFakeQuant:  # pragma: no cover
        raise NotImplementedError(f"{cls.__name__} does not implement _build (needed by from_spec)")

    def levels(self) -> Tensor:  # pragma: no cover - optional
        """All representable values per channel, (C, L) (used by the Lloyd-Max diagnostic)."""
        raise NotImplementedError

    def storage_form(self, w: Tensor) -> WeightFakeQuant | None:
        """The quantizer whose codes and state are what gets stored for input ``w`` (itself; a hardened soft
        mixture answers with the fixed quantizer it finalizes into, a soft one with ``None``: stored as floats)."""
        return self

    def region_form(self, w: Tensor) -> RegionForm | None:
        """Piecewise-uniform form of :meth:`quantize` (before bias correction), or ``None``."""
        return None

    def without_bias_correction(self) -> WeightFakeQuant:
        """A copy of this quantizer without its bias-correction terms (rebuilt through :meth:`spec`)."""
        spec = self.spec()
        tensors = {k: v for k, v in spec.tensors.items() if k not in ("bc_shift", "bc_gain")}
        return type(self).from_spec(QuantSpec(spec.scheme, spec.attrs, tensors))

    def int8_branches(self, w: Tensor) -> list[IntForm] | None:
        """Int8 forms whose dequantized sum is ``forward(w)`` (int8 kernels, ONNX Q/DQ); default: the single
        :meth:`int8_form`, or ``None``."""
        f = self.int8_form(w)
        return None if f is None else [f]

    def describe(self, w: Tensor) -> dict[str, Any]:
        """Scheme-specific per-layer statistics for the quantization result (e.g. PWLQ breakpoint ratios)."""
        return {}

    # -- protocol ----------------------------------------------------------------------------------------
    def code_bits(self) -> dict[str, int]:
        """Bits per element of each code stream of :meth:`codes` (default: one ``codes`` stream of ``bits``)."""
        return {"codes": int(self.bits)}

    def int8_form(self, w: Tensor) -> IntForm | None:
        """Integer form of ``forward(w)`` (<= 8-bit codes, per-channel scale/zero point), or ``None``."""
        return None

    def spec(self) -> QuantSpec:
        """Serialisable state: ``quantizer_from_spec(q.spec())`` computes the same values bit for bit."""
        attrs = {"bits": int(self.bits), "dim": self.dim}
        attrs.update({k: _json_attr(v) for k, v in self._attrs().items()})
        tensors = {k: v.detach().clone() for k, v in self.export_state().items() if v is not None}
        return QuantSpec(self.scheme, attrs, tensors)

    @classmethod
    def from_spec(cls, spec: QuantSpec) -> WeightFakeQuant:
        """Rebuild from :meth:`spec` (bias-correction terms included)."""
        if spec.scheme != cls.scheme:
            raise StorageError(f"{cls.__name__} cannot rebuild a {spec.scheme!r} spec")
        tensors = dict(spec.tensors)
        shift, gain = tensors.pop("bc_shift", None), tensors.pop("bc_gain", None)
        q = cls._build(dict(spec.attrs), tensors)
        if shift is not None:
            q.set_bias_correction(shift, gain)
        return q

    # -- joint-candidate hooks (optional; joint_candidate = True) ------------------------------------------
    @classmethod
    def joint_quantize(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None) -> Tensor:
        """Fake-quantize ``w`` at ``bits`` with parameters following the current ``w`` (scales from max|w|)
        and the slow-varying per-row ``param`` (C, 1) if the scheme has one."""
        raise NotImplementedError(f"{cls.__name__} is not a joint candidate")

    @classmethod
    def joint_fit(cls, w: Tensor, bits: int, dim: int | None, name: str) -> Tensor | None:
        """Re-fit the slow-varying per-row parameter (C, 1) to ``w`` (``None`` if the scheme has none)."""
        return None

    @classmethod
    def joint_fixed(cls, w: Tensor, bits: int, dim: int | None, param: Tensor | None,
                    name: str) -> WeightFakeQuant:
        """The fixed quantizer whose forward on ``w`` equals :meth:`joint_quantize` (finalization)."""
        raise NotImplementedError(f"{cls.__name__} is not a joint candidate")

    # -- shared ------------------------------------------------------------------------------------------
    def set_bias_correction(self, shift: Tensor | None, gain: Tensor | None) -> None:
        """Store per-channel bias-correction terms (``None`` removes them)."""
        self.bc_shift = None if shift is None else shift.detach().clone()
        self.bc_gain = None if gain is None else gain.detach().clone()

    def _correct(self, q: Tensor) -> Tensor:
        if self.bc_shift is None:
            return q
        return (q + per_channel(self.bc_shift.to(q.dtype), q, self.dim)) * per_channel(
            self.bc_gain.to(q.dtype), q, self.dim)

    def forward(self, w: Tensor) -> Tensor:
        return self._correct(self.quantize(w))

    def decode(self, codes: dict[str, Tensor]) -> Tensor:
        """Float weights rebuilt from :meth:`codes` and the quantizer state; equals ``forward(w)``."""
        return self._correct(self._decode_raw(codes))

    def export_state(self) -> dict[str, Tensor]:
        """Everything besides the codes that is needed to rebuild the weights (scales, offsets, breakpoints)."""
        state = dict(self._state())
        if self.bc_shift is not None:
            state["bc_shift"], state["bc_gain"] = self.bc_shift, self.bc_gain
        return state

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scheme={self.scheme}, granularity={self.granularity}"


# --------------------------------------------------------------------------------------------- activations
ACT_GRANULARITIES = ("tensor", "channel", "token")


def act_channel_dim(module: nn.Module) -> int:
    """The channel dimension of ``module``'s input: 1 for convolutions, pools and batch norms (N, C, ...), the last
    dimension otherwise (Linear, attention, recurrent and transformer inputs (..., C))."""
    conv_like = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AvgPoolNd,
                 nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                 nn.modules.batchnorm._BatchNorm)
    return 1 if isinstance(module, conv_like) else -1


class ActFakeQuant(nn.Module):
    """Uniform activation fake-quantizer: ``x_hat = scale * (clamp(round(x/scale) + zp) - zp)``.

    ``signed=False`` (range [0, r_u], codes 0..2^b-1) is used after ReLU; otherwise symmetric signed codes
    -2^(b-1)..2^(b-1)-1 with ``zero_point=0``. Gradient: straight-through inside the range, 0 where clipped.

    ``granularity``:

    * ``"tensor"`` (default): one ``scale`` (0-d) for the whole tensor.
    * ``"channel"``: one scale per channel along ``channel_dim`` (``scale`` has shape (C,)); for layers whose
      input has a few huge channels (transformer LayerNorm outputs). Stored: C floats.
    * ``"token"``: dynamic, no stored scale; each row (every position along the other dimensions, i.e. each token
      of a (..., C) input, each pixel of an NCHW input) gets ``scale = ratio * max|row| / qmax`` computed at run
      time, as LLM W8A8 schemes do. Cost: one max-reduction over C and one division per row at inference, and a
      kernel that takes per-row scales (onnxruntime's static Q/DQ does not; ONNX export refuses it).
    """

    scheme = "act-uniform"

    def __init__(self, bits: int, signed: bool, scale: float | Tensor | None, zero_point: int = 0, *,
                 granularity: str = "tensor", channel_dim: int = -1, ratio: float = 1.0):
        super().__init__()
        self.bits = check_bits(bits, "activation bits")
        self.signed = bool(signed)
        if granularity not in ACT_GRANULARITIES:
            raise ConfigError(f"activation granularity must be one of {ACT_GRANULARITIES}, got {granularity!r}")
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
            raise ConfigError(f"activation channel_dim must be an integer, got {channel_dim!r}")
        ratio = float(ratio)
        if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
            raise ConfigError(f"activation clipping ratio must be in (0, 1], got {ratio}")
        self.granularity, self.channel_dim, self.ratio = granularity, channel_dim, ratio
        if granularity == "token":
            self.register_buffer("scale", None)
        else:
            if scale is None:
                raise ConfigError(f"a {granularity} activation quantizer needs a scale")
            scale = torch.as_tensor(scale, dtype=torch.float32)
            scale = scale.reshape(()) if granularity == "tensor" else scale.reshape(-1)
            if scale.numel() == 0 or not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
                raise ConfigError(f"activation scale must be finite and > 0, got {scale.tolist()}")
            self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("zero_point", torch.tensor(int(zero_point), dtype=torch.int32))

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    @property
    def channels(self) -> int | None:
        """Number of per-channel scales (``None`` unless ``granularity == "channel"``)."""
        return int(self.scale.numel()) if self.granularity == "channel" else None

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int) -> ActFakeQuant:
        """Unsigned quantizer on [0, hi] if ``lo >= 0`` else symmetric on [-M, M], M = max(|lo|, |hi|)."""
        check_bits(bits, "activation bits")
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"activation range must be finite, got [{lo}, {hi}]")
        if lo >= 0:
            span = hi if hi > 0 else 1.0
            return cls(bits, signed=False, scale=span / (2 ** bits - 1))
        bound = max(abs(lo), abs(hi))
        return cls(bits, signed=True, scale=2 * bound / (2 ** bits - 1))

    @classmethod
    def from_channel_ranges(cls, lo: Tensor, hi: Tensor, bits: int, channel_dim: int,
                            signed: bool | None = None) -> ActFakeQuant:
        """Per-channel quantizer from per-channel ranges ``lo``/``hi`` (C,): unsigned on [0, hi_c] when every
        ``lo_c >= 0`` (or ``signed=False``), else symmetric on [-M_c, M_c]. A channel with an empty range (never
        non-zero in calibration) gets the largest scale of the others (1 if all are empty)."""
        check_bits(bits, "activation bits")
        lo = torch.as_tensor(lo, dtype=torch.float64).reshape(-1)
        hi = torch.as_tensor(hi, dtype=torch.float64).reshape(-1)
        if lo.shape != hi.shape or lo.numel() == 0:
            raise ConfigError(f"per-channel activation ranges must be two equal non-empty vectors, got "
                              f"{tuple(lo.shape)} and {tuple(hi.shape)}")
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
            raise ConfigError("per-channel activation ranges must be finite")
        signed = bool((lo < 0).any()) if signed is None else bool(signed)
        levels = 2 ** bits - 1
        span = torch.maximum(lo.abs(), hi.abs()) * 2 if signed else hi.clamp(min=0)
        scale = (span / levels).to(torch.float32)
        good = scale > 0
        fill = scale[good].max() if bool(good.any()) else torch.tensor(1.0)
        scale = torch.where(good, scale, fill)
        return cls(bits, signed=signed, scale=scale, granularity="channel", channel_dim=channel_dim)

    # -- storage ------------------------------------------------------------------------------------------
    def spec(self) -> QuantSpec:
        """Serialisable state (bits, signedness, granularity, scale(s), zero point)."""
        attrs = {"bits": int(self.bits), "signed": self.signed, "zero_point": int(self.zero_point)}
        if self.granularity != "tensor":
            attrs.update(granularity=self.granularity, channel_dim=int(self.channel_dim), ratio=float(self.ratio))
        tensors = {} if self.scale is None else {"scale": self.scale.detach().clone()}
        return QuantSpec(self.scheme, attrs, tensors)

    @classmethod
    def from_spec(cls, spec: QuantSpec) -> ActFakeQuant:
        if spec.scheme != cls.scheme:
            raise StorageError(f"{cls.__name__} cannot rebuild a {spec.scheme!r} spec")
        granularity = str(spec.attrs.get("granularity", "tensor"))
        scale = None if granularity == "token" else spec.tensor("scale")
        return cls(int(spec.attr("bits")), bool(spec.attr("signed")), scale, int(spec.attrs.get("zero_point", 0)),
                   granularity=granularity, channel_dim=int(spec.attrs.get("channel_dim", -1)),
                   ratio=float(spec.attrs.get("ratio", 1.0)))

    def layout(self) -> dict[str, Any]:
        """JSON description from which :meth:`from_layout` builds a quantizer of the same shape (its buffers are
        then loaded with the model's state dict); what the ``.pq`` file stores per activation quantizer."""
        out: dict[str, Any] = {"bits": int(self.bits), "signed": self.signed}
        if self.granularity != "tensor":
            out.update(granularity=self.granularity, channel_dim=int(self.channel_dim), ratio=float(self.ratio))
        if self.granularity == "channel":
            out["channels"] = self.channels
        return out

    @classmethod
    def from_layout(cls, d: dict[str, Any]) -> ActFakeQuant:
        """A quantizer shaped like :meth:`layout` says (unit scales, to be overwritten by the stored buffers)."""
        granularity = str(d.get("granularity", "tensor"))
        scale = torch.ones(int(d["channels"])) if granularity == "channel" else 1.0
        return cls(int(d["bits"]), bool(d["signed"]), scale, granularity=granularity,
                   channel_dim=int(d.get("channel_dim", -1)), ratio=float(d.get("ratio", 1.0)))

    # -- maths --------------------------------------------------------------------------------------------
    def _scale_for(self, x: Tensor) -> Tensor:
        """The scale broadcast against ``x`` (dynamic per row for ``"token"``), in ``x``'s dtype."""
        if self.granularity == "tensor":
            return self.scale.to(x.dtype)
        d = self.channel_dim if self.channel_dim >= 0 else x.dim() + self.channel_dim
        if not 0 <= d < x.dim():
            raise ShapeError(f"{self.granularity} activation quantizer: channel_dim {self.channel_dim} does not exist "
                             f"in an input of shape {tuple(x.shape)}")
        if self.granularity == "channel":
            if x.shape[d] != self.scale.numel():
                raise ShapeError(f"per-channel activation quantizer has {self.scale.numel()} scales, the input has "
                                 f"{x.shape[d]} channels along dim {d} (shape {tuple(x.shape)})")
            shape = [1] * x.dim()
            shape[d] = -1
            return self.scale.to(x.dtype).reshape(shape)
        xd = x.detach().float()
        amax = xd.abs().amax(dim=d, keepdim=True) if self.signed else xd.amax(dim=d, keepdim=True).clamp(min=0)
        levels = 2 ** self.bits - 1
        s = (amax * (2 * self.ratio if self.signed else self.ratio)) / levels
        return torch.where(s > 0, s, torch.ones_like(s)).to(x.dtype)

    def codes(self, x: Tensor) -> Tensor:
        """Integer codes of ``x`` (int32)."""
        q = torch.round(x / self._scale_for(x)) + self.zero_point
        return q.clamp(self.qmin, self.qmax).to(torch.int32)

    def forward(self, x: Tensor) -> Tensor:
        s, z = self._scale_for(x), self.zero_point.to(x.dtype)
        q = (torch.round(x / s) + z).clamp(self.qmin, self.qmax)
        xq = (q - z) * s
        lo, hi = (self.qmin - z - 0.5) * s, (self.qmax - z + 0.5) * s
        return ste(x, xq, lo, hi)

    def extra_repr(self) -> str:
        if self.granularity == "tensor":
            return f"bits={self.bits}, signed={self.signed}, scale={float(self.scale):.4g}"
        extra = f", channels={self.channels}" if self.granularity == "channel" else f", ratio={self.ratio:.4g}"
        return (f"bits={self.bits}, signed={self.signed}, granularity={self.granularity}, "
                f"channel_dim={self.channel_dim}{extra}")


_QUANTIZERS[ActFakeQuant.scheme] = ActFakeQuant


def _input_quant_pre_hook(module: nn.Module, args: tuple):
    if not args or not isinstance(args[0], Tensor):
        return None
    return (module.input_quant(args[0]),) + tuple(args[1:])


def attach_input_quant(module: nn.Module, quant: nn.Module) -> None:
    """Quantize the first positional input of ``module`` with ``quant`` (child ``input_quant`` + pre-hook)."""
    detach_input_quant(module)
    module.input_quant = quant
    module.register_forward_pre_hook(_input_quant_pre_hook)
    module.prunequant_abits = quant.bits


def detach_input_quant(module: nn.Module) -> None:
    """Remove an input quantizer added by :func:`attach_input_quant` (no-op if there is none)."""
    for key in [k for k, fn in module._forward_pre_hooks.items() if fn is _input_quant_pre_hook]:
        del module._forward_pre_hooks[key]
    if "input_quant" in module._modules:
        del module._modules["input_quant"]
    if hasattr(module, "prunequant_abits"):
        del module.prunequant_abits

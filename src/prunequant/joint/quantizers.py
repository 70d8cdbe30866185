"""Soft mixed-precision quantizers: x ↦ Σ_b π_b · Q_b(x), with straight-through rounding inside each Q_b.

* :class:`SoftMixWeightQuant` - a ``torch.nn.utils.parametrize`` parametrization stacked after the pruning mask
  on a weight. Each candidate Q_b is the project's symmetric uniform quantizer
  (:func:`~prunequant.quantization.uniform.uniform_quantize`, scale 2·max|w|/(2^b − 1)) or PWLQ
  (:func:`~prunequant.quantization.pwlq.pwlq_quantize`, breakpoint ratio re-fitted every few steps); ``b = 0``
  is the all-zero "pruned away" candidate. Scales follow the current (masked) weight, so every term keeps
  exact zeros.
* :class:`SoftMixActQuant` - a feature-map quantizer put at a layer's input with
  :func:`~prunequant.quantization.base.attach_input_quant`; range from an EMA of the batch min/max, unsigned
  when the feature map is non-negative (after ReLU), symmetric otherwise, exactly as
  :meth:`~prunequant.quantization.base.ActFakeQuant.from_range`.
* :class:`ChannelBitsWeightQuant` - the finalized form of a per-channel mixture: uniform codes with one
  bit-width per output channel (0 = channel removed).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..core.quantizer import (
    MIN_BITS,
    IntForm,
    QuantSpec,
    WeightFakeQuant,
    check_weight,
    per_channel,
    quantizer_class,
    register_quantizer,
    ste,
    to_channels,
)
from ..errors import ConfigError, LayerError, ShapeError, StorageError
from ..quantization.uniform import uniform_quantize
from .mixture import BitMixture

DEFAULT_PWLQ_RATIO = 0.25  # PWLQ's joint_param_default (kept for callers)


@register_quantizer("soft-mixture")
class SoftMixWeightQuant(WeightFakeQuant):
    """Weight parametrization Σ_b π_b · Q_b(w) over candidate bit-widths (see module docstring).

    Each candidate ``Q_b`` comes from the quantizer registry: ``schemes[i]`` names a registered weight quantizer
    with ``joint_candidate = True`` (its ``joint_quantize`` / ``joint_fit`` / ``joint_fixed`` hooks); ``b = 0``
    is the all-zero candidate. ``dim``: 0 for per-output-channel scales, ``None`` for one scale per tensor.
    ``mix_channels``: number of output channels when π is per channel (``None``: one π per tensor).
    ``scale_channels``: number of scale rows (``w.shape[0]`` for ``dim=0``, else 1), which sizes the buffer of
    slow-varying per-row candidate parameters (B, rows, 1) (PWLQ's breakpoint ratio p/m).
    """

    def __init__(self, bits: Sequence[int], schemes: Sequence[str], dim: int | None = None,
                 mix_channels: int | None = None, scale_channels: int = 1, init: str = "linear",
                 variant: str = "b_center"):
        super().__init__(None, dim)
        if len(schemes) != len(bits):
            raise ConfigError(f"{len(schemes)} schemes for {len(bits)} candidate bit-widths")
        classes = []
        for s in schemes:
            cls = quantizer_class(s)
            if not getattr(cls, "joint_candidate", False):
                raise ConfigError(f"weight scheme {s!r} is not a joint candidate")
            classes.append(cls)
        if mix_channels is not None and any(s != "uniform" for b, s in zip(bits, schemes) if b):
            raise ConfigError("per-channel mixtures support uniform candidates only")
        self.mixture = BitMixture(bits, mix_channels, init)
        self.schemes = tuple(schemes)
        self._classes = tuple(classes)
        self.variant = variant
        self.init = init
        self.scale_channels = int(scale_channels)
        default = torch.tensor([c.joint_param_default or 0.0 for c in classes]).reshape(-1, 1, 1)
        self.register_buffer("pwlq_ratio", default.expand(len(bits), int(scale_channels), 1).clone())

    # -- what analysis.report / io.save read ---------------------------------------------------------------
    @property
    def bits(self) -> int:
        """The current choice (frozen or argmax); the widest channel for per-channel mixtures; at least 2."""
        return max(MIN_BITS, int(self.mixture.current_bits().max()))

    # -- quantization ----------------------------------------------------------------------------------------
    def _param(self, i: int, w: Tensor) -> Tensor | None:
        return None if self._classes[i].joint_param_default is None else self.pwlq_ratio[i].to(w.dtype)

    def candidate(self, w: Tensor, i: int) -> Tensor:
        """Q_b(w) for candidate ``i`` (fake-quantized, straight-through gradient)."""
        b = self.mixture.bits[i]
        if b == 0:
            return torch.zeros_like(w)
        return self._classes[i].joint_quantize(w, b, self.dim, self._param(i, w))

    def pwlq_params(self, w: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """(max_abs (C,), breakpoints (C, 1)) of PWLQ candidate ``i`` for weight ``w``."""
        m = to_channels(w.detach(), self.dim).abs().amax(1)
        return m, self.pwlq_ratio[i].to(w.dtype) * m[:, None]

    def quantize_current(self, w: Tensor) -> Tensor:
        """Q(w) at the current choice (frozen or argmax) whether or not the mixture is hardened."""
        c = self.mixture.current()
        if c.dim() == 0:
            return self.candidate(w, int(c))
        out = torch.zeros_like(w)
        for i in c.unique().tolist():
            out = torch.where(per_channel(c == i, w, 0), self.candidate(w, i), out)
        return out

    def quantize(self, w: Tensor) -> Tensor:
        mix = self.mixture
        if mix.hard and not mix.per_channel:
            return self.candidate(w, int(mix.chosen))
        p = mix.probs()
        idx = mix.chosen.unique().tolist() if mix.hard else range(len(mix.bits))
        out = None
        for i in idx:  # a handful of candidate bit-widths, not a loop over weights or channels
            pi = p[i] if p.dim() == 1 else per_channel(p[i], w, 0)
            term = pi * self.candidate(w, i)
            out = term if out is None else out + term
        return out

    @torch.no_grad()
    def fixed_quantizer(self, w: Tensor, name: str = "weight") -> WeightFakeQuant:
        """The fixed-precision quantizer that computes :meth:`quantize_current` on ``w`` (finalization): the
        candidate scheme's ``joint_fixed``, :class:`ChannelBitsWeightQuant` for per-channel mixtures, and a
        smallest-width uniform quantizer for a removed (0-bit) layer."""
        mix = self.mixture
        if mix.per_channel:
            return ChannelBitsWeightQuant.from_weight(w, mix.current_bits().long(), dim=self.dim, name=name)
        return self.candidate_fixed(w, int(mix.current()), name)

    @torch.no_grad()
    def candidate_fixed(self, w: Tensor, i: int, name: str = "weight") -> WeightFakeQuant:
        """The fixed quantizer candidate ``i`` finalizes into on ``w`` (every channel at that candidate for a
        per-channel mixture); its spec and code bits are what the storage cost model charges."""
        b = self.mixture.bits[i]
        if self.mixture.per_channel:
            rows = w.shape[0]
            return ChannelBitsWeightQuant.from_weight(w, torch.full((rows,), b, dtype=torch.long, device=w.device),
                                                      dim=self.dim, name=name)
        if b == 0:  # removed layer: all-zero weight, stored at the smallest width
            return quantizer_class("uniform").from_weight(w, MIN_BITS, symmetric=True, dim=self.dim, name=name)
        return self._classes[i].joint_fixed(w, b, self.dim, self._param(i, w), name)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        if not self.mixture.hard:
            raise LayerError("a soft mixture has no integer codes; harden_ or finalize_ the joint model first")
        return self.fixed_quantizer(w).codes(w)

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        raise LayerError("a soft mixture cannot decode codes; finalize_ the joint model and export that")

    def _state(self) -> dict[str, Tensor]:
        return {}  # the mixture's state travels in spec(); storage is that of storage_form()

    def storage_form(self, w: Tensor) -> WeightFakeQuant | None:
        """The fixed quantizer once the mixture is hardened; ``None`` (stored as floats) while it is soft."""
        return self.fixed_quantizer(w) if self.mixture.hard else None

    def _attrs(self) -> dict:
        return {"candidate_bits": list(self.mixture.bits), "schemes": list(self.schemes),
                "mix_channels": None if not self.mixture.per_channel else int(self.mixture.logits.shape[1]),
                "scale_channels": self.scale_channels, "init": self.init, "variant": self.variant}

    def spec(self) -> QuantSpec:
        attrs = {"bits": None, "dim": self.dim, **self._attrs()}
        return QuantSpec(self.scheme, attrs, {k: v.detach().clone() for k, v in self.state_dict().items()})

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> SoftMixWeightQuant:
        q = cls(attrs["candidate_bits"], attrs["schemes"], dim=attrs["dim"], mix_channels=attrs["mix_channels"],
                scale_channels=int(attrs["scale_channels"]), init=attrs["init"], variant=attrs["variant"])
        try:
            q.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise StorageError(f"soft-mixture spec tensors do not fit: {e}") from e
        q.mixture.logits.requires_grad_(not q.mixture.hard)
        return q

    def code_bits(self) -> dict[str, int]:
        return {"codes": self.bits}

    @torch.no_grad()
    def refresh_breakpoints_(self, w: Tensor, name: str = "weight") -> None:
        """Re-fit the slow-varying parameter (PWLQ: p/m) of every candidate that has one to ``w`` (zeros are
        quantized exactly and ignored by the search)."""
        if not bool((w != 0).any()):
            return
        for i, (b, cls) in enumerate(zip(self.mixture.bits, self._classes)):
            if b == 0 or cls.joint_param_default is None:
                continue
            p = cls.joint_fit(w, b, self.dim, name)
            if p is not None:
                self.pwlq_ratio[i].copy_(p.to(self.pwlq_ratio.dtype))

    def extra_repr(self) -> str:
        return f"schemes={self.schemes}, granularity={self.granularity}"


class SoftMixActQuant(nn.Module):
    """Feature-map quantizer Σ_b π_b · Q_b(x) with a running range (EMA of batch min/max in training mode)."""

    def __init__(self, bits: Sequence[int], init: str = "linear", momentum: float = 0.1):
        super().__init__()
        if any(b < MIN_BITS for b in bits):
            raise ConfigError(f"feature-map candidates must be >= {MIN_BITS} bits, got {tuple(bits)}")
        self.mixture = BitMixture(bits, None, init)
        self.momentum = float(momentum)
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))

    @property
    def bits(self) -> int:
        return int(self.mixture.current_bits())

    @property
    def signed(self) -> bool:
        return bool(self.lo < 0)

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        lo, hi = x.detach().min().float(), x.detach().max().float()
        if not bool(self.calibrated):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.calibrated.fill_(True)
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def scale(self, bits: int) -> Tensor:
        """Scale of the b-bit quantizer for the current range (ActFakeQuant.from_range's rule)."""
        if self.lo >= 0:
            span = torch.where(self.hi > 0, self.hi, torch.ones_like(self.hi))
            return span / (2 ** bits - 1)
        return 2 * torch.maximum(self.lo.abs(), self.hi.abs()) / (2 ** bits - 1)

    def candidate(self, x: Tensor, i: int) -> Tensor:
        b = self.mixture.bits[i]
        return uniform_quantize(x, b, self.scale(b), None, signed=self.signed, dim=None)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.observe(x)
        if not bool(self.calibrated):
            raise ConfigError("feature-map quantizer used before calibration: run a training-mode forward first")
        mix = self.mixture
        if mix.hard:
            return self.candidate(x, int(mix.chosen))
        p = mix.probs()
        out = None
        for i in range(len(mix.bits)):
            term = p[i] * self.candidate(x, i)
            out = term if out is None else out + term
        return out

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"


@register_quantizer("channel-bits")
class ChannelBitsWeightQuant(WeightFakeQuant):
    """Uniform symmetric weight quantizer with one bit-width per output channel (dim 0); 0 bits = zero channel.

    ``bits`` (what the report reads) is the widest channel, so storage estimates are conservative.
    Spec tensors: per-channel ``scale`` (float32) and ``channel_bits`` (uint8). Integer form: its codes when the
    widest channel has <= 8 bits.
    """

    def __init__(self, channel_bits: Tensor, scale: Tensor):
        cb = torch.as_tensor(channel_bits).reshape(-1).to(torch.uint8)
        super().__init__(max(MIN_BITS, int(cb.max())), 0)
        s = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if s.numel() != cb.numel():
            raise ShapeError(f"{s.numel()} scales for {cb.numel()} channel bit-widths")
        self.register_buffer("channel_bits", cb.clone())
        self.register_buffer("scale", s.detach().clone())

    @classmethod
    def from_weight(cls, w: Tensor, channel_bits: Tensor, dim: int | None = 0, name: str = "weight"):
        """Scales as :func:`symmetric_scale` gives them for each channel's bit-width, max over the channel
        (``dim=0``) or over the whole tensor (``dim=None``)."""
        check_weight(w, name)
        cb = torch.as_tensor(channel_bits, device=w.device).reshape(-1).long()
        if cb.numel() != w.shape[0]:
            raise ShapeError(f"{name}: {cb.numel()} channel bit-widths for {w.shape[0]} output channels")
        x = to_channels(w.detach(), 0).abs().amax(1)
        m = x if dim == 0 else x.max().expand_as(x)
        s = 2 * m / (2.0 ** cb - 1).to(m.dtype)
        s = torch.where((s > 0) & (cb > 0), s, torch.ones_like(s))
        return cls(cb, s)

    def _range(self, dtype) -> tuple[Tensor, Tensor]:
        cb = self.channel_bits.long()
        half = torch.where(cb > 0, 2 ** (cb - 1).clamp(min=0), torch.zeros_like(cb))
        qmin = torch.where(cb > 0, -half, torch.zeros_like(cb)).to(dtype)
        qmax = torch.where(cb > 0, half - 1, torch.zeros_like(cb)).to(dtype)
        return qmin, qmax

    def quantize(self, w: Tensor) -> Tensor:
        qmin, qmax = (per_channel(v, w, 0) for v in self._range(w.dtype))
        s = per_channel(self.scale.to(w.dtype), w, 0)
        q = torch.maximum(torch.minimum(torch.round(w / s), qmax), qmin)
        return ste(w, q * s, (qmin - 0.5) * s, (qmax + 0.5) * s)

    def codes(self, w: Tensor) -> dict[str, Tensor]:
        qmin, qmax = (per_channel(v, w, 0) for v in self._range(w.dtype))
        s = per_channel(self.scale.to(w.dtype), w, 0)
        q = torch.maximum(torch.minimum(torch.round(w.detach() / s), qmax), qmin)
        return {"codes": q.to(torch.int32)}

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:
        c = codes["codes"].to(torch.float32)
        return c * per_channel(self.scale, c, 0)

    def _state(self) -> dict[str, Tensor]:
        return {"scale": self.scale, "channel_bits": self.channel_bits}

    @classmethod
    def _build(cls, attrs: dict, tensors: dict[str, Tensor]) -> ChannelBitsWeightQuant:
        return cls(tensors["channel_bits"], tensors["scale"])

    def int8_form(self, w: Tensor) -> IntForm | None:
        if self.bits > 8 or self.bc_shift is not None:
            return None
        codes = self.codes(w)["codes"]
        return IntForm(codes, self.scale.detach().float().clone(), torch.zeros_like(self.scale, dtype=torch.int32),
                       signed=True)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", channel_bits={sorted(set(self.channel_bits.tolist()))}"


__all__ = ["SoftMixWeightQuant", "SoftMixActQuant", "ChannelBitsWeightQuant"]

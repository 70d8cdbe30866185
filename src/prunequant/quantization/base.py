"""Shared representation of quantized layers and the input checks every quantizer uses.

* :class:`WeightFakeQuant` - base class of the parametrizations put on ``weight`` (or ``weight_ih_l0`` ...)
  with ``torch.nn.utils.parametrize``. Subclasses expose ``bits``, ``scheme``, ``granularity``,
  ``export_state()`` (scales, offsets, breakpoints) and ``codes(w)`` / ``decode(codes)`` so ``export/`` can
  pack the exact integers and rebuild the identical float weights.
* :class:`ActFakeQuant` - uniform activation fake-quantizer inserted at a layer's input by a forward pre-hook
  (:func:`attach_input_quant`); the layer gets ``prunequant_abits``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError, LayerError

MIN_BITS, MAX_BITS = 2, 16


def check_bits(bits, what: str = "bits") -> int:
    """Return ``bits`` as int if it is an integer in [2, 16], else raise :class:`ConfigError`."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{what} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def check_weight(w: Tensor, name: str = "tensor") -> None:
    """Raise :class:`LayerError` naming ``name`` if ``w`` is empty, not floating point, or not finite."""
    if not isinstance(w, Tensor):
        raise LayerError(f"{name}: expected a torch.Tensor, got {type(w).__name__}")
    if w.numel() == 0:
        raise LayerError(f"{name}: empty tensor (shape {tuple(w.shape)}) cannot be quantized")
    if not w.is_floating_point():
        raise LayerError(f"{name}: expected a floating-point tensor, got {w.dtype}")
    bad = ~torch.isfinite(w)
    if bool(bad.any()):
        n_nan = int(torch.isnan(w).sum())
        raise LayerError(f"{name}: {int(bad.sum())} non-finite values ({n_nan} NaN, "
                         f"{int(bad.sum()) - n_nan} Inf) in a tensor of shape {tuple(w.shape)}")


def to_channels(w: Tensor, dim: int | None) -> Tensor:
    """View ``w`` as (C, K): one row per slice along ``dim`` (per channel), or (1, N) when ``dim`` is None."""
    if dim is None:
        return w.reshape(1, -1)
    if w.dim() == 0:
        raise LayerError("a 0-d tensor has no channel dimension; use dim=None")
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


class WeightFakeQuant(nn.Module):
    """Base parametrization: ``forward(w)`` returns the fake-quantized weight (straight-through gradient).

    Quantizer state lives in buffers (moved by ``.to()``, saved in ``state_dict``). Optional per-channel bias
    correction (``bc_shift``, ``bc_gain``) is applied after quantization: ``(q + shift) * gain``.
    """

    scheme: str = "base"

    def __init__(self, bits: int, dim: int | None):
        super().__init__()
        self.bits = check_bits(bits, "weight bits")
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
        """Integer codes (and region ids) of ``w``; :meth:`decode` maps them back to ``forward(w)``."""
        raise NotImplementedError

    def _decode_raw(self, codes: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state(self) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------
    def set_bias_correction(self, shift: Tensor | None, gain: Tensor | None) -> None:
        """Store per-channel bias-correction terms (``None`` removes them)."""
        self.bc_shift = None if shift is None else shift.detach().clone()
        self.bc_gain = None if gain is None else gain.detach().clone()

    def _correct(self, q: Tensor) -> Tensor:
        if self.bc_shift is None:
            return q
        return (q + per_channel(self.bc_shift, q, self.dim)) * per_channel(self.bc_gain, q, self.dim)

    def forward(self, w: Tensor) -> Tensor:
        return self._correct(self.quantize(w))

    def decode(self, codes: dict[str, Tensor]) -> Tensor:
        """Float weights rebuilt from :meth:`codes` and :meth:`export_state`; equals ``forward(w)``."""
        return self._correct(self._decode_raw(codes))

    def export_state(self) -> dict[str, Tensor]:
        """Everything besides the codes that is needed to rebuild the weights (scales, offsets, breakpoints)."""
        state = dict(self._state())
        if self.bc_shift is not None:
            state["bc_shift"], state["bc_gain"] = self.bc_shift, self.bc_gain
        return state

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scheme={self.scheme}, granularity={self.granularity}"


class ActFakeQuant(nn.Module):
    """Uniform per-tensor activation fake-quantizer: ``x_hat = scale * (clamp(round(x/scale) + zp) - zp)``.

    ``signed=False`` (range [0, r_u], codes 0..2^b-1) is used after ReLU; otherwise symmetric signed codes
    -2^(b-1)..2^(b-1)-1 with ``zero_point=0``. Gradient: straight-through inside the range, 0 where clipped.
    """

    def __init__(self, bits: int, signed: bool, scale: float | Tensor, zero_point: int = 0):
        super().__init__()
        self.bits = check_bits(bits, "activation bits")
        self.signed = bool(signed)
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(())
        if not bool(torch.isfinite(scale)) or float(scale) <= 0:
            raise ConfigError(f"activation scale must be finite and > 0, got {float(scale)}")
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", torch.tensor(int(zero_point), dtype=torch.int32))

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

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

    def codes(self, x: Tensor) -> Tensor:
        """Integer codes of ``x`` (int32)."""
        q = torch.round(x / self.scale) + self.zero_point
        return q.clamp(self.qmin, self.qmax).to(torch.int32)

    def forward(self, x: Tensor) -> Tensor:
        s, z = self.scale.to(x.dtype), self.zero_point.to(x.dtype)
        q = (torch.round(x / s) + z).clamp(self.qmin, self.qmax)
        xq = (q - z) * s
        lo, hi = (self.qmin - z - 0.5) * s, (self.qmax - z + 0.5) * s
        return ste(x, xq, lo, hi)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, scale={float(self.scale):.4g}"


def _input_quant_pre_hook(module: nn.Module, args: tuple):
    if not args or not isinstance(args[0], Tensor):
        return None
    return (module.input_quant(args[0]),) + tuple(args[1:])


def attach_input_quant(module: nn.Module, quant: ActFakeQuant) -> None:
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

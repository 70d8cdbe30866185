"""CPU weight-only Linear for any registered weight quantizer, group-wise ones included (dequantize on the fly).

:class:`PackedWeightOnlyLinear` keeps what a deployed weight-only layer keeps and nothing more: every code
stream of the quantizer (``codes``, PWLQ's ``region`` ...) bit-packed per output row in the smallest 1/2/4/8-bit
container that holds it, the quantizer's own parameters (its ``spec()`` tensors: per-group fp16 scales / zero
points / ranges / breakpoints, per-channel bias correction) and the bias. Each ``forward`` unpacks the codes with
shifts and masks (torch ops, vectorized over rows and groups), dequantizes them with the quantizer's own
``decode`` and runs ``F.linear``; no float weight is stored between calls.

The dequantized matrix equals the fake-quantized weight bit for bit (checked when the layer is built), so the
output equals the parametrized ``nn.Linear`` up to nothing but the matmul itself.

Example:
    >>> import torch
    >>> from torch.nn.utils import parametrize
    >>> from prunequant.quantization.groupwise import GroupPWLQWeightQuant
    >>> lin = torch.nn.Linear(64, 8)
    >>> _ = parametrize.register_parametrization(lin, "weight", GroupPWLQWeightQuant.from_weight(lin.weight, 3, 32))
    >>> packed = PackedWeightOnlyLinear.from_module(lin)
    >>> torch.equal(packed.dequantized_weight(), lin.weight.detach())
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.chain import WeightChain
from ...core.quantizer import QuantSpec, quantizer_from_spec
from ...errors import ShapeError, UnsupportedModuleError

__all__ = ["PackedWeightOnlyLinear", "pack_rows", "to_packed_weight_only_", "unpack_rows"]

_CONTAINERS = (1, 2, 4, 8)


def _container(bits: int) -> int:
    for c in _CONTAINERS:
        if bits <= c:
            return c
    raise UnsupportedModuleError(f"packed weight-only layer supports code streams of <= 8 bits, got {bits}")


def pack_rows(u: Tensor, width: int) -> Tensor:
    """Pack non-negative integers ``u`` (N, K) < 2^width into (N, ceil(K*width/8)) uint8, value k of a row in bits
    ``[(k % (8/width)) * width, ...)`` of byte ``k // (8/width)`` (width in 1, 2, 4, 8)."""
    if width not in _CONTAINERS:
        raise ShapeError(f"container width must be one of {_CONTAINERS}, got {width}")
    N, K = u.shape
    per = 8 // width
    Kp = (K + per - 1) // per * per
    v = torch.zeros(N, Kp, dtype=torch.int32)
    v[:, :K] = u.to(torch.int32)
    shifts = torch.arange(per, dtype=torch.int32) * width
    return (v.reshape(N, Kp // per, per) << shifts).sum(-1).to(torch.uint8)


def unpack_rows(packed: Tensor, width: int, K: int) -> Tensor:
    """Inverse of :func:`pack_rows`: (N, K) int32."""
    per = 8 // width
    shifts = torch.arange(per, dtype=torch.int32, device=packed.device) * width
    v = (packed.to(torch.int32)[..., None] >> shifts) & ((1 << width) - 1)
    return v.reshape(packed.shape[0], -1)[:, :K]


class PackedWeightOnlyLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` decoded from packed code streams at every call (see module docstring).

    Build it with :meth:`from_module` from an ``nn.Linear`` carrying a weight quantizer (any registered scheme
    with ``codes``/``decode``: ``uniform``, ``pwlq``, ``uniform-group``, ``pwlq-group``, ...).
    """

    def __init__(self, spec: QuantSpec, streams: dict[str, tuple[Tensor, int, int, torch.dtype]],
                 shape: tuple[int, ...], bias: Tensor | None):
        super().__init__()
        self.quantizer = quantizer_from_spec(spec)
        self.shape = tuple(int(s) for s in shape)
        self.in_features, self.out_features = self.shape[1], self.shape[0]
        self._streams = {}
        for name, (packed, width, offset, dtype) in streams.items():
            self.register_buffer(f"packed_{name}", packed)
            self._streams[name] = (width, offset, dtype)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    @torch.no_grad()
    def from_module(cls, module: nn.Linear, name: str = "layer") -> PackedWeightOnlyLinear:
        """Pack a quantized ``nn.Linear``; :class:`UnsupportedModuleError` naming ``name`` when it has no
        quantizer, a code stream wider than 8 bits, or an effective weight the codes do not reproduce (e.g. a
        mask applied after the quantizer)."""
        if not isinstance(module, nn.Linear):
            raise UnsupportedModuleError(f"{name}: packed weight-only layer supports nn.Linear, "
                                         f"got {type(module).__name__}")
        chain = WeightChain(module, "weight")
        quant = chain.quantizer
        if quant is None:
            raise UnsupportedModuleError(f"{name}: no weight quantizer on the weight")
        quant = quant.storage_form(chain.quant_input())
        if quant is None:
            raise UnsupportedModuleError(f"{name}: the weight quantizer has no fixed stored form (finalize it first)")
        x = chain.quant_input().detach()
        codes = quant.codes(x)
        w_eff = chain.effective().detach()
        if not torch.equal(quant.decode(codes).to(w_eff.dtype), w_eff):
            raise UnsupportedModuleError(f"{name}: the effective weight differs from the decoded codes (pruned "
                                         "after quantizing?); the weight-only layer cannot express it")
        bits = quant.code_bits()
        streams = {}
        for sname, c in codes.items():
            c2 = c.reshape(c.shape[0], -1).to(torch.int64)
            offset = -int(c2.min()) if int(c2.min()) < 0 else 0
            width = _container(max(int(bits.get(sname, 8)), int(c2.max() + offset).bit_length(), 1))
            streams[sname] = (pack_rows(c2 + offset, width), width, offset, c.dtype)
        return cls(quant.spec(), streams, tuple(w_eff.shape), module.bias)

    def codes(self) -> dict[str, Tensor]:
        """The unpacked code streams, shaped like the weight."""
        K = 1
        for s in self.shape[1:]:
            K *= s
        out = {}
        for name, (width, offset, dtype) in self._streams.items():
            u = unpack_rows(getattr(self, f"packed_{name}"), width, K) - offset
            out[name] = u.to(dtype).reshape(self.shape)
        return out

    def dequantized_weight(self) -> Tensor:
        """The float weight the layer computes with (the fake-quantized weight, bit for bit)."""
        return self.quantizer.decode(self.codes())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"input has {x.shape[-1]} features, the layer expects {self.in_features}")
        w = self.dequantized_weight().to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def storage_bits(self) -> int:
        """Bits this layer holds: packed code containers + quantizer parameters + bias."""
        n = sum(getattr(self, f"packed_{s}").numel() * 8 for s in self._streams)
        n += sum(t.numel() * t.element_size() * 8 for t in self.quantizer.export_state().values() if t is not None)
        return n + (0 if self.bias is None else self.bias.numel() * 32)

    def extra_repr(self) -> str:
        streams = ", ".join(f"{s}:{w}b" for s, (w, _, _) in self._streams.items())
        return f"in={self.in_features}, out={self.out_features}, scheme={self.quantizer.scheme}, {streams}"


def to_packed_weight_only_(model: nn.Module) -> list[str]:
    """Replace every quantized ``nn.Linear`` of ``model`` (in place) by a :class:`PackedWeightOnlyLinear`;
    returns the replaced layer names. Layers without a quantizer are left alone."""
    from ...core.targets import set_submodule

    names = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and WeightChain(module, "weight").quantizer is not None:
            packed = PackedWeightOnlyLinear.from_module(module, name or "model")
            if name:
                set_submodule(model, name, packed)
            names.append(name)
    return names

"""Fast inference paths for compressed Linear/Conv2d layers, chosen per layer with a dense fallback.

Paths (module classes below):

* ``dense``  - the layer with its effective weight baked in (parametrizations removed). Always available.
* ``sparse`` - :class:`SparseLinear` / :class:`SparseConv2d`: the weight as a ``torch.sparse_csr`` tensor with
  int32 indices; Linear uses ``torch.mv`` at batch 1 and ``torch.mm`` otherwise, Conv2d (groups=1) is im2col
  (``F.unfold``) + one CSR GEMM. Exact up to float summation order.
* ``int8``   - :class:`Int8Linear` / :class:`Int8Conv2d`: PyTorch's quantized engine (``torch.ao``, x86/fbgemm):
  int8 weights per output channel, activations quantized to 8 bits per call (Linear: the dynamic module; Conv2d:
  the static module with per-call input parameters and a calibrated output scale).
  When the layer carries a symmetric uniform quantizer with <= 8 bits its own codes and scales are used, so the
  weights are exact; otherwise weights are re-quantized per channel (symmetric, max|w|/127).
* ``pwlq``   - :class:`PWLQInt8Linear` / :class:`PWLQInt8Conv2d` for a PWLQ-quantized layer: the paper's
  accumulator split (docs/deployment.md) as int8 branches ``W = sum_r step_r * (sign*k)|_r + sum_(r>0) p_r *
  sign|_r`` stacked into one per-channel int8 dynamic layer with ``(2R-1) * out`` outputs, summed afterwards.
  Weights exact; activations dynamically int8.

:func:`optimize` picks a path per layer: it captures each layer's input on ``example_input``, builds every
eligible candidate, rejects any whose output strays from the dense layer's beyond its tolerance, times the rest
(median of repeats) and keeps the fastest; ``force`` overrides the choice (``"sparse"`` for every eligible layer,
or ``{"layer": "int8"}``; forcing an ineligible layer raises :class:`ConfigError`). With ``autotune=False`` it
uses the thresholds measured by ``benchmarks/deploy.py`` on the development CPU instead of timing.
Approximate paths (int8, pwlq) are only candidates for layers already quantized to <= 8 bits unless
``int8="always"``.
"""
from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import ConfigError, LayerError, UnsupportedModuleError

__all__ = [
    "PATHS",
    "SPARSE_MIN_SPARSITY",
    "TOLERANCE",
    "Int8Conv2d",
    "Int8Linear",
    "PWLQInt8Conv2d",
    "PWLQInt8Linear",
    "PathChoice",
    "SparseConv2d",
    "SparseLinear",
    "build_path",
    "eligible_paths",
    "layer_info",
    "optimize",
    "time_call",
]

PATHS = ("dense", "sparse", "int8", "pwlq")
# Sparsity above which CSR beats dense on the development CPU (AVX-512, 1 thread) for realistic widths, from
# benchmarks/deploy.py: batch 1 -> torch.mv wins from ~0.7, batch 64 -> torch.mm wins from ~0.8. Used only
# when autotune=False; autotune measures instead.
SPARSE_MIN_SPARSITY = {"batch1": 0.7, "batched": 0.8}
# Max relative error (max|y - y_dense| / max|y_dense|) a path may show on the example input.
TOLERANCE = {"dense": 0.0, "sparse": 1e-4, "int8": 0.1, "pwlq": 0.1}


# --------------------------------------------------------------------------------------------- helpers
def _effective_weight(module: nn.Module) -> Tensor:
    return module.weight.detach().clone()


def _quantizer(module: nn.Module):
    from ..quantization.base import WeightFakeQuant

    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations["weight"]:
            if isinstance(p, WeightFakeQuant):
                return p
    return None


def _quantizer_input(module: nn.Module) -> Tensor:
    plist = module.parametrizations["weight"]
    x = plist.original
    for p in plist:
        if p is _quantizer(module):
            return x.detach()
        x = p(x)
    raise LayerError("no quantizer on this weight")  # pragma: no cover


def _bias(module: nn.Module) -> Tensor | None:
    return None if module.bias is None else module.bias.detach().clone()


def _conv_args(conv: nn.Conv2d) -> dict[str, Any]:
    if isinstance(conv.padding, str):
        raise UnsupportedModuleError(f"Conv2d with padding={conv.padding!r} is not supported by fast paths")
    if conv.padding_mode != "zeros":
        raise UnsupportedModuleError(f"Conv2d with padding_mode={conv.padding_mode!r} is not supported")
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}


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
        return cls(_effective_weight(m), _bias(m))

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
        return cls(_effective_weight(m), _bias(m), **_conv_args(m))

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


# --------------------------------------------------------------------------------------------- int8
def _int8_codes(module: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-output-channel (int8 codes, float scales) that reproduce the effective weight: exact for a symmetric
    uniform quantizer with <= 8 bits (and no bias correction), else a max|w|/127 re-quantization."""
    from ..quantization.uniform import UniformWeightQuant

    q = _quantizer(module)
    w = _effective_weight(module)
    if (isinstance(q, UniformWeightQuant) and q.symmetric and q.bits <= 8 and q.dim == 0
            and q.bc_shift is None):
        codes = q.codes(_quantizer_input(module))["codes"]
        codes = torch.where(w == 0, torch.zeros_like(codes), codes)  # pruned after quantizing
        return codes.to(torch.int8), q.scale.detach().clone().reshape(-1)
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
        codes, s = _int8_codes(m)
        return cls(codes, s, _bias(m))

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
        codes, s = _int8_codes(m)
        args = _conv_args(m)
        return cls(codes, s, _bias(m), **args, out_absmax=cls.calibrate(codes, s, _bias(m), args, x))

    def forward(self, x: Tensor) -> Tensor:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        xq = torch.quantize_per_tensor(x.float(), scale, round(-lo / scale), torch.quint8)
        return self.inner(xq).dequantize()


# --------------------------------------------------------------------------------------------- pwlq (int8 branches)
def pwlq_branches(module: nn.Module) -> tuple[Tensor, Tensor]:
    """Int8 branch codes (Bn, out, ...) and per-channel scales (Bn, out) whose sum ``sum_b scale_b * codes_b``
    equals the PWLQ layer's effective weight (up to float rounding of the sum).

    Branch ``r`` (r = 0..R-1) holds ``sign * k`` where the weight lies in region r, scaled by that region's step;
    branch ``R + r - 1`` (r >= 1) holds the sign there, scaled by the region's lower bound p_r.
    """
    from ..quantization.pwlq import PWLQWeightQuant, bounds, region_steps

    q = _quantizer(module)
    if not isinstance(q, PWLQWeightQuant):
        raise UnsupportedModuleError("the pwlq path needs a PWLQWeightQuant parametrization on the weight")
    if q.bc_shift is not None:
        raise UnsupportedModuleError("the pwlq path does not support bias correction (use dense or int8)")
    if q.bits > 8:
        raise UnsupportedModuleError(f"the pwlq path needs <= 8-bit codes, layer has {q.bits}")
    if q.dim not in (0, None):
        raise UnsupportedModuleError("the pwlq path needs per-output-channel (dim=0) or per-tensor parameters")
    w = _effective_weight(module)
    c = q.codes(_quantizer_input(module))
    code, region = c["codes"].long(), c["region"].long()
    keep = w != 0
    out = w.shape[0]
    P = bounds(q.breakpoints, q.max_abs)                 # (C, R+1) with C = out or 1
    steps = region_steps(P, q.bits, q.variant)            # (C, R)
    R = steps.shape[1]
    neg = code < 0
    k = torch.where(neg, -code - 1, code)
    sign = torch.where(neg, -1, 1)
    branches, scales = [], []
    for r in range(R):  # R <= 4 regions: a loop over regions, not over weights or channels
        in_r = (region == r) & keep
        branches.append(torch.where(in_r, sign * k, 0))
        scales.append(steps[:, r].expand(out))
    for r in range(1, R):
        in_r = (region == r) & keep
        branches.append(torch.where(in_r, sign, 0))
        scales.append(P[:, r].expand(out))
    codes = torch.stack(branches).to(torch.int8)
    scl = torch.stack(scales).float()
    scl = torch.where(scl > 0, scl, torch.ones_like(scl))
    return codes, scl


class PWLQInt8Linear(nn.Module):
    """PWLQ Linear as ``2R - 1`` int8 branches stacked in one dynamic int8 Linear, then summed."""

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None):
        super().__init__()
        self.n_branches, self.out_features = codes.shape[0], codes.shape[1]
        self.inner = Int8Linear(codes.reshape(-1, codes.shape[-1]), scales.reshape(-1), None)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Linear) -> PWLQInt8Linear:
        codes, scales = pwlq_branches(m)
        return cls(codes, scales, _bias(m))

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        y = y.reshape(*y.shape[:-1], self.n_branches, self.out_features).sum(-2)
        return y if self.bias is None else y + self.bias


class PWLQInt8Conv2d(nn.Module):
    """PWLQ Conv2d as ``2R - 1`` int8 branches stacked in one dynamic int8 Conv2d (groups=1), then summed."""

    def __init__(self, codes: Tensor, scales: Tensor, bias: Tensor | None, stride, padding, dilation, groups,
                 out_absmax: float):
        super().__init__()
        if groups != 1:
            raise UnsupportedModuleError("PWLQInt8Conv2d supports groups=1 only")
        self.n_branches, self.out_channels = codes.shape[0], codes.shape[1]
        flat_codes, flat_scales = codes.reshape(-1, *codes.shape[2:]), scales.reshape(-1)
        self.inner = Int8Conv2d(flat_codes, flat_scales, None, stride, padding, dilation, groups, out_absmax)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, m: nn.Conv2d, x: Tensor) -> PWLQInt8Conv2d:
        codes, scales = pwlq_branches(m)
        args = _conv_args(m)
        absmax = Int8Conv2d.calibrate(codes.reshape(-1, *codes.shape[2:]), scales.reshape(-1), None, args, x)
        return cls(codes, scales, _bias(m), **args, out_absmax=absmax)

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        B, _, H, W = y.shape
        y = y.reshape(B, self.n_branches, self.out_channels, H, W).sum(1)
        return y if self.bias is None else y + self.bias[None, :, None, None]


# --------------------------------------------------------------------------------------------- selection
def _plain_copy(module: nn.Module) -> nn.Module:
    """A new plain Linear/Conv2d with ``module``'s effective weight and bias (no parametrizations or hooks).

    Built fresh rather than by ``deepcopy`` + ``remove_parametrizations``: a deep copy shares the dynamically
    created parametrized class, and removing the parametrization from the copy would break the original."""
    if isinstance(module, nn.Linear):
        new: nn.Module = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.Conv2d):
        new = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                        padding=module.padding, dilation=module.dilation, groups=module.groups,
                        bias=module.bias is not None, padding_mode=module.padding_mode)
    else:
        raise UnsupportedModuleError(f"no dense path for {type(module).__name__}")
    with torch.no_grad():
        new.weight = nn.Parameter(_effective_weight(module), requires_grad=False)
        if module.bias is not None:
            new.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
    return new.to(module.weight.device).eval()


_BUILDERS: dict[tuple[str, type], Callable[[nn.Module, Tensor], nn.Module]] = {
    ("dense", nn.Linear): lambda m, x: _plain_copy(m),
    ("dense", nn.Conv2d): lambda m, x: _plain_copy(m),
    ("sparse", nn.Linear): lambda m, x: SparseLinear.from_module(m),
    ("sparse", nn.Conv2d): lambda m, x: SparseConv2d.from_module(m),
    ("int8", nn.Linear): lambda m, x: Int8Linear.from_module(m),
    ("int8", nn.Conv2d): Int8Conv2d.from_module,
    ("pwlq", nn.Linear): lambda m, x: PWLQInt8Linear.from_module(m),
    ("pwlq", nn.Conv2d): PWLQInt8Conv2d.from_module,
}


def layer_info(module: nn.Module) -> dict[str, Any]:
    """Sparsity, bit width and scheme of a Linear/Conv2d layer (from its effective weight and quantizer)."""
    w = module.weight.detach()
    q = _quantizer(module)
    bits = int(q.bits) if q is not None else getattr(module, "prunequant_wbits", None)
    return {"sparsity": float((w == 0).float().mean()), "bits": bits,
            "scheme": getattr(q, "scheme", None), "groups": getattr(module, "groups", 1)}


def eligible_paths(module: nn.Module, int8: str = "auto") -> dict[str, str | None]:
    """``{path: None if eligible else the reason it is not}`` for one layer."""
    if int8 not in ("auto", "always", "never"):
        raise ConfigError(f"int8 must be 'auto', 'always' or 'never', got {int8!r}")
    info = layer_info(module)
    out: dict[str, str | None] = {"dense": None}
    if isinstance(module, nn.Conv2d) and info["groups"] != 1:
        out["sparse"] = "grouped/depthwise conv"
    elif info["sparsity"] == 0:
        out["sparse"] = "no zero weights"
    else:
        out["sparse"] = None
    quantized8 = info["bits"] is not None and info["bits"] <= 8
    if int8 == "never":
        out["int8"] = "int8 disabled"
    elif int8 == "auto" and not quantized8:
        out["int8"] = "layer not quantized to <= 8 bits (pass int8='always' to allow)"
    else:
        out["int8"] = None
    if info["scheme"] != "pwlq":
        out["pwlq"] = "layer has no PWLQ quantizer"
    elif int8 == "never":
        out["pwlq"] = "int8 disabled"
    elif isinstance(module, nn.Conv2d) and info["groups"] != 1:
        out["pwlq"] = "grouped/depthwise conv"
    else:
        out["pwlq"] = None
    return out


def build_path(module: nn.Module, path: str, example_input: Tensor | None = None) -> nn.Module:
    """The ``path`` implementation of a Linear/Conv2d ``module`` (raises if the type is not supported).
    ``example_input`` (the layer's input) calibrates the output scale of int8/pwlq convolutions."""
    if path not in PATHS:
        raise ConfigError(f"unknown path {path!r}; expected one of {PATHS}")
    if example_input is None and isinstance(module, nn.Conv2d) and path in ("int8", "pwlq"):
        raise ConfigError(f"the {path} conv path needs example_input to calibrate its output scale")
    for (p, typ), fn in _BUILDERS.items():
        if p == path and isinstance(module, typ):
            return fn(module, example_input)
    raise UnsupportedModuleError(f"no {path} path for {type(module).__name__}")


def time_call(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


@dataclass
class PathChoice:
    """The path chosen for one layer, why, and the measured timings (ms) and errors of each candidate."""

    layer: str
    path: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    rel_error: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def _rel_err(y: Tensor, ref: Tensor) -> float:
    scale = float(ref.abs().max())
    return float((y - ref).abs().max()) / (scale if scale > 0 else 1.0)


def _capture_inputs(model: nn.Module, names: list[str], example_input) -> dict[str, Tensor]:
    """The input each named layer receives on ``example_input`` (after any input quantizer)."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name in names:
        mod = model.get_submodule(name)

        def hook(m, args, _name=name):
            seen[_name] = args[0].detach()
        handles.append(mod.register_forward_pre_hook(hook))  # runs after an input-quant pre-hook
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def optimize(model: nn.Module, example_input: Tensor, *, force: str | dict[str, str] | None = None,
             autotune: bool = True, int8: str = "auto", repeats: int = 20,
             tolerance: dict[str, float] | None = None) -> tuple[nn.Module, list[PathChoice]]:
    """Return ``(fast_model, choices)``: a copy of ``model`` (eval mode) whose Linear/Conv2d layers run on the
    path chosen per layer, and one :class:`PathChoice` per layer.

    ``force``: a path name for every eligible layer (ineligible ones keep the automatic choice) or a dict
    ``{layer_name: path}`` (an ineligible forced path raises :class:`ConfigError` naming the layer).
    An input quantizer on a layer stays in front of the fast module, so activations are quantized as before.
    """
    from ..quantization.base import attach_input_quant

    tol = {**TOLERANCE, **(tolerance or {})}
    src = model.eval()
    names = [n for n, m in src.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if isinstance(force, dict):
        unknown = [n for n in force if n not in names]
        if unknown:
            raise ConfigError(f"force: no Linear/Conv2d layer named {unknown}; layers: {names}")
        for n, p in force.items():
            if p not in PATHS:
                raise ConfigError(f"force['{n}']: unknown path {p!r}; expected one of {PATHS}")
    elif force is not None and force not in PATHS:
        raise ConfigError(f"force: unknown path {force!r}; expected one of {PATHS}")
    inputs = _capture_inputs(src, names, example_input)
    fast = copy.deepcopy(src)
    choices: list[PathChoice] = []
    for name in names:
        layer = src.get_submodule(name)
        if name not in inputs:
            choices.append(PathChoice(name, "dense", "layer not reached by example_input"))
            continue
        x = inputs[name]
        elig = eligible_paths(layer, int8)
        choice = PathChoice(name, "dense", "")
        choice.rejected = {p: r for p, r in elig.items() if r is not None}
        wanted = force.get(name) if isinstance(force, dict) else force
        if isinstance(force, dict) and wanted is not None and elig.get(wanted) is not None:
            raise ConfigError(f"layer '{name}': cannot force path {wanted!r}: {elig[wanted]}")
        if wanted is not None and elig.get(wanted) is not None:
            wanted = None  # global force: this layer is not eligible, choose automatically
        candidates = [wanted] if wanted else [p for p in PATHS if elig.get(p) is None]
        built: dict[str, nn.Module] = {}
        with torch.no_grad():
            ref = _plain_copy(layer)(x)
            for p in candidates:
                try:
                    mod = build_path(layer, p, x)
                    y = mod(x)
                except (RuntimeError, UnsupportedModuleError, LayerError) as e:
                    if wanted:
                        raise ConfigError(f"layer '{name}': forced path {p!r} failed: {e}") from e
                    choice.rejected[p] = f"failed: {e}"
                    continue
                err = _rel_err(y, ref)
                choice.rel_error[p] = err
                if err > tol[p] and not wanted:
                    choice.rejected[p] = f"relative error {err:.3g} > tolerance {tol[p]}"
                    continue
                built[p] = mod
        if not built:
            built["dense"] = _plain_copy(layer)
        if wanted:
            choice.path, choice.reason = wanted, "forced"
        elif autotune:
            with torch.no_grad():
                for p, mod in built.items():
                    choice.timings_ms[p] = time_call(lambda m=mod, x=x: m(x), repeats=repeats)
            choice.path = min(choice.timings_ms, key=choice.timings_ms.get)
            choice.reason = "fastest measured"
        else:
            choice.path, choice.reason = _heuristic(layer, x, built)
        new = built[choice.path]
        old = fast.get_submodule(name)
        quant = old._modules.get("input_quant")
        if quant is not None:
            attach_input_quant(new, quant)
        _set_submodule(fast, name, new)
        choices.append(choice)
    return fast.eval(), choices


def _heuristic(layer: nn.Module, x: Tensor, built: dict[str, nn.Module]) -> tuple[str, str]:
    info = layer_info(layer)
    batch = x.shape[0] if isinstance(layer, nn.Conv2d) else x.reshape(-1, x.shape[-1]).shape[0]
    thr = SPARSE_MIN_SPARSITY["batch1" if batch == 1 else "batched"]
    if "sparse" in built and info["sparsity"] >= thr:
        return "sparse", f"sparsity {info['sparsity']:.2f} >= {thr}"
    for p in ("pwlq", "int8"):
        if p in built:
            return p, "quantized layer"
    return "dense", "fallback"

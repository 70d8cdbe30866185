"""Weight-only quantized GEMM (uniform or PWLQ codes dequantized on the fly): pure-torch reference + Triton kernel.

Kernel weight layout (:class:`KernelWeights`), one row per output channel, rows byte-aligned:

* ``codes`` (N, Kp*CB/8) uint8: unsigned codes ``u = q - qmin`` in a CB-bit container (CB in {2, 4, 8}, the
  smallest >= the quantizer's bits), value ``k`` of a row in bits ``[(k % (8/CB))*CB, ...)`` of byte
  ``k // (8/CB)`` - the :mod:`~prunequant.export.bitpack` layout per row (K padded to a multiple of 8).
* ``region`` (N, Kp*RB/8) uint8 for PWLQ: region ids in an RB-bit container (RB = 1 for 2 regions, 2 for 3-4).
* per-channel parameters: uniform ``scale``, ``zero_point``; PWLQ ``step`` (N, R) and ``lower`` (N, R) (region
  lower bounds ``[0, p_1, ...]``); optional bias correction ``bc_shift``, ``bc_gain``.

Dequantization, exactly the quantizers' own formulas:
uniform ``w = (q - zp) * scale``; PWLQ ``k = q if q >= 0 else -q - 1``, ``v = lower[r] + k * step[r]``,
``w = v if q >= 0 else -v``; then ``w = (w + bc_shift) * bc_gain`` if bias correction is present.

:func:`weight_only_matmul_reference` does this in torch (tested on CPU: the dequantized matrix equals the fake-quant
weight bit for bit). :func:`weight_only_matmul_triton` is the fused CUDA kernel (dequantize in registers, both
PWLQ regions, fp16 tensor-core dot with fp32 accumulation). **The kernel has never been compiled for or run on a
GPU here (no GPU in development or CI).** Its logic (indexing, masks, both regions, bias correction) was checked
against the reference under Triton's CPU interpreter (``TRITON_INTERPRET=1`` with triton installed; the test skips
without triton); ``benchmarks/gpu_kernels.py`` checks and times it on a CUDA machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...core.chain import WeightChain
from ...errors import LayerError, ShapeError, UnsupportedModuleError
from ..bitpack import bits_needed, pack_bits

try:  # optional: only on CUDA machines with Triton
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the machine
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "KernelWeights",
    "WeightOnlyLinear",
    "dequantize_reference",
    "pack_weight_only",
    "triton_available",
    "weight_only_matmul_reference",
    "weight_only_matmul_triton",
]


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_available() -> tuple[bool, str]:
    """``(ok, reason)``: whether the Triton kernel can run here (on CUDA, or on CPU tensors under Triton's
    interpreter, ``TRITON_INTERPRET=1`` set before import - slow, for checking the kernel's logic only)."""
    if not HAS_TRITON:
        return False, "triton is not installed"
    if _interpreted():
        return True, "triton interpreter (TRITON_INTERPRET=1, CPU)"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return True, "ok"


@dataclass
class KernelWeights:
    scheme: str                 # "uniform" | "pwlq"
    N: int
    K: int
    CB: int                     # code container bits
    RB: int                     # region container bits (0 for uniform)
    qmin: int
    codes: Tensor               # (N, Kp*CB/8) uint8
    region: Tensor | None       # (N, Kp*RB/8) uint8
    scale: Tensor | None        # (N,) uniform
    zero_point: Tensor | None   # (N,) uniform
    step: Tensor | None         # (N, R) pwlq
    lower: Tensor | None        # (N, R) pwlq
    bc_shift: Tensor | None
    bc_gain: Tensor | None
    bias: Tensor | None

    def to(self, device) -> KernelWeights:
        kw = dict(vars(self))
        for k, v in kw.items():
            if isinstance(v, Tensor):
                kw[k] = v.to(device)
        return KernelWeights(**kw)


def _container(bits: int) -> int:
    for c in (1, 2, 4, 8):
        if bits <= c:
            return c
    raise UnsupportedModuleError(f"weight-only kernel supports <= 8-bit codes, got {bits}")


def _pack_rows(u: Tensor, width: int) -> Tensor:
    N, K = u.shape
    Kp = (K + 7) // 8 * 8
    if Kp != K:
        u = torch.cat([u, torch.zeros(N, Kp - K, dtype=u.dtype)], 1)
    return pack_bits(u.reshape(-1), width).reshape(N, Kp * width // 8)


def _expand(v: Tensor, N: int) -> Tensor:
    v = v.detach().float().reshape(-1)
    return v.expand(N).contiguous() if v.numel() == 1 else v.clone()


@torch.no_grad()
def pack_weight_only(module: nn.Linear) -> KernelWeights:
    """Kernel layout of a Linear layer whose quantizer has an integer form (uniform, log2 <= 4 bits: the
    ``"uniform"`` layout) or a piecewise-uniform form (PWLQ: the ``"pwlq"`` layout), per output channel or per
    tensor; bias correction is applied after dequantization.

    Raises :class:`UnsupportedModuleError` when the layer cannot be expressed exactly (no quantizer, > 8 bits,
    zeros that the codes do not decode to - e.g. pruned after quantizing with bias correction)."""
    if not isinstance(module, nn.Linear):
        raise UnsupportedModuleError(f"weight-only kernel supports nn.Linear, got {type(module).__name__}")
    chain = WeightChain(module, "weight")
    quant = chain.quantizer
    if quant is None:
        raise UnsupportedModuleError("weight-only kernel needs a WeightFakeQuant parametrization on the weight")
    if quant.dim not in (0, None):
        raise UnsupportedModuleError("weight-only kernel needs per-output-channel (dim=0) or per-tensor parameters")
    w_eff = chain.effective().detach()
    x = chain.quant_input()
    if not torch.equal(quant.decode(quant.codes(x)).to(w_eff.dtype), w_eff):
        raise UnsupportedModuleError("the effective weight differs from the decoded codes (pruned after "
                                     "quantizing?); the weight-only kernel cannot express it")
    N, K = w_eff.shape
    bc = (None, None) if quant.bc_shift is None else (_expand(quant.bc_shift, N), _expand(quant.bc_gain, N))
    bias = None if module.bias is None else module.bias.detach().float().clone()
    raw = quant.without_bias_correction() if quant.bc_shift is not None else quant
    form = raw.int8_form(x)
    if form is not None:
        q = form.codes.to(torch.int64)
        qmin = int(q.min())
        CB = _container(bits_needed(int(q.max()) - qmin))
        return KernelWeights("uniform", N, K, CB, 0, qmin, _pack_rows(q - qmin, CB), None,
                             _expand(form.scale, N), _expand(form.zero_point.float(), N), None, None, *bc, bias)
    rf = raw.region_form(x)
    if rf is not None:
        if quant.bits > 8:
            raise UnsupportedModuleError(f"weight-only kernel supports <= 8-bit codes, got {quant.bits}")
        qmin = -(2 ** (quant.bits - 1))
        CB = _container(quant.bits)
        R = rf.step.shape[1]
        RB = _container(max(1, (R - 1).bit_length()))
        q = rf.codes.to(torch.int64)
        return KernelWeights("pwlq", N, K, CB, RB, qmin, _pack_rows(q - qmin, CB),
                             _pack_rows(rf.region.to(torch.int64), RB), None, None,
                             rf.step.expand(N, R).float().contiguous(), rf.lower.expand(N, R).float().contiguous(),
                             *bc, bias)
    raise UnsupportedModuleError(f"weight-only kernel: the {quant.scheme} quantizer has no integer form "
                                 f"({quant.bits} bits); group-wise and other schemes run on "
                                 "export.kernels.PackedWeightOnlyLinear")


def _unpack_rows(packed: Tensor, width: int, K: int) -> Tensor:
    """Same index arithmetic as the kernel: value k is in byte k // (8/width) at shift (k % (8/width))*width."""
    per = 8 // width
    k = torch.arange(K, device=packed.device)
    byte = packed[:, k // per].to(torch.int32)
    return (byte >> ((k % per) * width).to(torch.int32)) & ((1 << width) - 1)


def dequantize_reference(kw: KernelWeights) -> Tensor:
    """The (N, K) float32 weight the kernel computes with (bit-identical to the fake-quant weight)."""
    q = _unpack_rows(kw.codes, kw.CB, kw.K) + kw.qmin
    if kw.scheme == "uniform":
        w = (q.float() - kw.zero_point[:, None]) * kw.scale[:, None]
    elif kw.scheme == "pwlq":
        r = _unpack_rows(kw.region, kw.RB, kw.K).long()
        neg = q < 0
        k = torch.where(neg, -q - 1, q).float()
        v = kw.lower.gather(1, r) + k * kw.step.gather(1, r)
        w = torch.where(neg, -v, v)
    else:
        raise ShapeError(f"unknown kernel scheme {kw.scheme!r}")
    if kw.bc_shift is not None:
        w = (w + kw.bc_shift[:, None]) * kw.bc_gain[:, None]
    return w


def weight_only_matmul_reference(x: Tensor, kw: KernelWeights) -> Tensor:
    """``x @ W^T + b`` with W dequantized from the packed codes (pure torch; CPU or GPU)."""
    if x.shape[-1] != kw.K:
        raise ShapeError(f"input has {x.shape[-1]} features, the layer expects {kw.K}")
    w = dequantize_reference(kw).to(x.dtype)
    y = x @ w.t()
    return y if kw.bias is None else y + kw.bias.to(x.dtype)


if HAS_TRITON:  # pragma: no cover - needs CUDA + Triton; exercised by benchmarks/gpu_kernels.py

    @triton.jit
    def _wo_gemm_kernel(x_ptr, codes_ptr, reg_ptr, scale_ptr, zp_ptr, step_ptr, lower_ptr, bcs_ptr, bcg_ptr,
                        bias_ptr, y_ptr, M, N, K, stride_xm, stride_xk, stride_cn, stride_rn, stride_ym, stride_yn,
                        QMIN: tl.constexpr, CB: tl.constexpr, RB: tl.constexpr, R: tl.constexpr,
                        PWLQ: tl.constexpr, HAS_BC: tl.constexpr, HAS_BIAS: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        m_ok = offs_m < M
        n_ok = offs_n < N
        PER: tl.constexpr = 8 // CB
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if not PWLQ:
            scale = tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)
            zp = tl.load(zp_ptr + offs_n, mask=n_ok, other=0.0)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            k_ok = kk < K
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk,
                        mask=m_ok[:, None] & k_ok[None, :], other=0.0)
            wmask = k_ok[:, None] & n_ok[None, :]
            byte = tl.load(codes_ptr + offs_n[None, :] * stride_cn + (kk[:, None] // PER), mask=wmask, other=0)
            q = ((byte.to(tl.int32) >> ((kk[:, None] % PER) * CB)) & ((1 << CB) - 1)) + QMIN   # (BK, BN)
            if PWLQ:
                if RB > 0:
                    RPER: tl.constexpr = 8 // RB
                    rbyte = tl.load(reg_ptr + offs_n[None, :] * stride_rn + (kk[:, None] // RPER), mask=wmask,
                                    other=0)
                    r = (rbyte.to(tl.int32) >> ((kk[:, None] % RPER) * RB)) & ((1 << RB) - 1)
                else:
                    r = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.int32)
                neg = q < 0
                kmag = tl.where(neg, -q - 1, q).to(tl.float32)
                tab = offs_n[None, :] * R + r
                lo = tl.load(lower_ptr + tab, mask=wmask, other=0.0)
                st = tl.load(step_ptr + tab, mask=wmask, other=0.0)
                v = lo + kmag * st
                w = tl.where(neg, -v, v)
            else:
                w = (q.to(tl.float32) - zp[None, :]) * scale[None, :]
            if HAS_BC:
                bcs = tl.load(bcs_ptr + offs_n, mask=n_ok, other=0.0)
                bcg = tl.load(bcg_ptr + offs_n, mask=n_ok, other=0.0)
                w = (w + bcs[None, :]) * bcg[None, :]
            w = tl.where(wmask, w, 0.0)
            acc += tl.dot(x.to(tl.float16), w.to(tl.float16))
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0)[None, :]
        tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn, acc,
                 mask=m_ok[:, None] & n_ok[None, :])


def weight_only_matmul_triton(x: Tensor, kw: KernelWeights, block_m: int = 16, block_n: int = 64,
                              block_k: int = 64) -> Tensor:
    """Fused dequantize + GEMM on CUDA (fp16 inputs to the dot, fp32 accumulation, fp32 output).

    Untested in this repository's CI (no GPU); ``benchmarks/gpu_kernels.py`` validates it against the reference."""
    ok, why = triton_available()
    if not ok:
        raise UnsupportedModuleError(f"Triton weight-only kernel unavailable: {why}")
    if not x.is_cuda and not _interpreted():
        raise LayerError("weight_only_matmul_triton needs CUDA tensors (or TRITON_INTERPRET=1)")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, kw.K)
    M = x2.shape[0]
    y = torch.empty(M, kw.N, device=x.device, dtype=torch.float32)
    dummy = torch.zeros(1, device=x.device, dtype=torch.float32)
    pwlq = kw.scheme == "pwlq"
    R = kw.step.shape[1] if pwlq else 1
    grid = (triton.cdiv(M, block_m), triton.cdiv(kw.N, block_n))
    _wo_gemm_kernel[grid](
        x2, kw.codes, kw.region if pwlq else kw.codes, kw.scale if not pwlq else dummy,
        kw.zero_point if not pwlq else dummy, kw.step if pwlq else dummy, kw.lower if pwlq else dummy,
        kw.bc_shift if kw.bc_shift is not None else dummy, kw.bc_gain if kw.bc_gain is not None else dummy,
        kw.bias if kw.bias is not None else dummy, y, M, kw.N, kw.K, x2.stride(0), x2.stride(1),
        kw.codes.stride(0), (kw.region.stride(0) if pwlq else 0), y.stride(0), y.stride(1),
        QMIN=kw.qmin, CB=kw.CB, RB=kw.RB, R=R, PWLQ=pwlq, HAS_BC=kw.bc_shift is not None,
        HAS_BIAS=kw.bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return y.reshape(*lead, kw.N).to(x.dtype)


class WeightOnlyLinear(nn.Module):
    """Linear layer holding packed codes; runs the Triton kernel on CUDA when available, else the reference."""

    def __init__(self, kw: KernelWeights):
        super().__init__()
        self.kw = kw

    @classmethod
    def from_module(cls, m: nn.Linear) -> WeightOnlyLinear:
        return cls(pack_weight_only(m))

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda and HAS_TRITON and torch.cuda.is_available():
            return weight_only_matmul_triton(x, self.kw.to(x.device))
        return weight_only_matmul_reference(x, self.kw)

"""Fast inference paths: numerics of each path, per-layer choice with force/fallback, weight-only reference."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import ConfigError, UnsupportedModuleError
from prunequant.export.kernels import (
    Int8Conv2d,
    Int8Linear,
    PWLQInt8Conv2d,
    PWLQInt8Linear,
    SparseConv2d,
    SparseLinear,
    pwlq_branches,
)
from prunequant.export.kernels.weight_only import (
    dequantize_reference,
    pack_weight_only,
    triton_available,
    weight_only_matmul_reference,
    weight_only_matmul_triton,
)
from prunequant.export.select import build_path, eligible_paths, optimize
from prunequant.models import build_model
from prunequant.pruning.base import apply_mask_, prunable_modules
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

torch.set_num_threads(1)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _layer(kind, sparsity=0.0, quant=None, seed=0):
    torch.manual_seed(seed)
    m = nn.Linear(48, 40) if kind == "linear" else nn.Conv2d(8, 12, 3, stride=2, padding=1)
    if sparsity:
        w = m.weight.detach()
        apply_mask_(m, "weight", w.abs() > w.abs().flatten().quantile(sparsity))
    if quant == "uniform8":
        parametrize.register_parametrization(m, "weight", UniformWeightQuant.from_weight(m.weight.detach(), 8))
    elif quant == "pwlq":
        parametrize.register_parametrization(m, "weight", PWLQWeightQuant.from_weight(m.weight.detach(), 4))
    elif quant == "pwlq3":
        parametrize.register_parametrization(m, "weight", PWLQWeightQuant.from_weight(m.weight.detach(), 4,
                                                                                      n_breakpoints=3))
    return m.eval()


def _input(kind, batch=4):
    return torch.randn(batch, 48) if kind == "linear" else torch.randn(batch, 8, 9, 9).relu()


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("batch", [1, 5])
def test_sparse_path_matches_dense(kind, batch):
    m = _layer(kind, 0.9)
    x = _input(kind, batch)
    fast = build_path(m, "sparse")
    assert isinstance(fast, SparseLinear if kind == "linear" else SparseConv2d)
    with torch.no_grad():
        assert torch.allclose(fast(x), m(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_int8_paths(kind):
    m = _layer(kind, 0.5, "uniform8")
    x = _input(kind)
    fast = build_path(m, "int8", x)
    assert isinstance(fast, Int8Linear if kind == "linear" else Int8Conv2d)
    w = fast.inner.weight()
    assert torch.equal(w.dequantize(), m.weight.detach())  # uniform 8-bit codes carried over exactly
    with torch.no_grad():
        assert _rel(fast(x), m(x)) < 0.03  # activations quantized to 8 bits per call


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("quant", ["pwlq", "pwlq3"])
def test_pwlq_branches_and_path(kind, quant):
    m = _layer(kind, 0.5, quant)
    codes, scales = pwlq_branches(m)
    R = 2 if quant == "pwlq" else 4
    assert codes.shape[0] == 2 * R - 1 and codes.dtype == torch.int8
    shape = [codes.shape[0], -1] + [1] * (codes.dim() - 2)
    w = (codes.float() * scales.reshape(shape)).sum(0)
    assert torch.allclose(w, m.weight.detach(), rtol=0, atol=1e-6)
    x = _input(kind)
    fast = build_path(m, "pwlq", x)
    assert isinstance(fast, PWLQInt8Linear if kind == "linear" else PWLQInt8Conv2d)
    with torch.no_grad():
        assert _rel(fast(x), m(x)) < 0.05


def test_eligibility_and_bad_input():
    plain = _layer("linear")
    elig = eligible_paths(plain)
    assert elig["dense"] is None and elig["sparse"] and elig["int8"] and elig["pwlq"]
    assert eligible_paths(plain, int8="always")["int8"] is None
    with pytest.raises(ConfigError):
        eligible_paths(plain, int8="sometimes")
    with pytest.raises(ConfigError):
        build_path(plain, "fp8")
    with pytest.raises(UnsupportedModuleError):
        build_path(nn.LSTM(4, 4), "sparse")
    with pytest.raises(ConfigError, match="example_input"):
        build_path(_layer("conv", quant="uniform8"), "int8")
    dw = nn.Conv2d(4, 4, 3, groups=4)
    apply_mask_(dw, "weight", torch.rand(4, 1, 3, 3) > 0.5)
    assert eligible_paths(dw)["sparse"] == "grouped/depthwise conv"


def _compressed_model():
    torch.manual_seed(0)
    m = build_model("mlp", hidden=(128, 64)).eval()
    for name, mod, _ in prunable_modules(m):
        w = mod.weight.detach()
        apply_mask_(mod, "weight", w.abs() > w.abs().flatten().quantile(0.9), layer_name=name)
        parametrize.register_parametrization(mod, "weight", PWLQWeightQuant.from_weight(mod.weight.detach(), 4))
    return m


def test_optimize_auto_force_and_fallback():
    m = _compressed_model()
    x = torch.randn(3, 1, 8, 8)
    fast, choices = optimize(m, x, repeats=3)
    assert [c.layer for c in choices] == ["net.1", "net.3", "net.5"]
    for c in choices:
        assert c.path in c.timings_ms and c.timings_ms[c.path] == min(c.timings_ms.values())
    with torch.no_grad():
        assert _rel(fast(x), m(x)) < 0.05
    forced, ch = optimize(m, x, force="sparse")
    assert all(c.path == "sparse" and c.reason == "forced" for c in ch)
    assert isinstance(forced.net[1], SparseLinear)
    with torch.no_grad():
        assert torch.allclose(forced(x), m(x), rtol=1e-5, atol=1e-6)
    _, ch = optimize(m, x, force={"net.3": "pwlq"}, autotune=False)
    assert {c.layer: c.path for c in ch}["net.3"] == "pwlq"
    assert {c.layer: c.reason for c in ch}["net.1"].startswith("sparsity")
    plain = build_model("mlp").eval()
    with pytest.raises(ConfigError, match="net.1"):
        optimize(plain, x, force={"net.1": "int8"})
    with pytest.raises(ConfigError, match="no Linear"):
        optimize(plain, x, force={"net.9": "dense"})
    _, ch = optimize(plain, x, force="int8", repeats=2)  # ineligible everywhere: automatic choice, dense
    assert all(c.path == "dense" for c in ch)


def test_optimize_rejects_paths_beyond_tolerance():
    m = _compressed_model()
    _, ch = optimize(m, torch.randn(3, 1, 8, 8), tolerance={"int8": 0.0, "pwlq": 0.0}, repeats=2)
    for c in ch:
        assert "tolerance" in c.rejected["int8"] and c.path in ("dense", "sparse")


@pytest.mark.parametrize("quant", ["uniform4", "affine8", "pwlq1", "pwlq3", "pwlq_bc", "tensor"])
def test_weight_only_reference_is_exact(quant):
    torch.manual_seed(5)
    m = nn.Linear(37, 19)
    apply_mask_(m, "weight", m.weight.detach().abs() > 0.05)
    w = m.weight.detach()
    q = {"uniform4": lambda: UniformWeightQuant.from_weight(w, 4),
         "affine8": lambda: UniformWeightQuant.from_weight(w, 8, symmetric=False),
         "pwlq1": lambda: PWLQWeightQuant.from_weight(w, 4),
         "pwlq3": lambda: PWLQWeightQuant.from_weight(w, 3, n_breakpoints=3),
         "pwlq_bc": lambda: PWLQWeightQuant.from_weight(w, 4),
         "tensor": lambda: PWLQWeightQuant.from_weight(w, 6, dim=None)}[quant]()
    if quant == "pwlq_bc":
        q.set_bias_correction(torch.full((19,), 0.001), torch.full((19,), 1.01))
    parametrize.register_parametrization(m, "weight", q)
    kw = pack_weight_only(m)
    assert kw.codes.dtype == torch.uint8 and kw.codes.shape == (19, 40 * kw.CB // 8)
    assert torch.equal(dequantize_reference(kw), m.weight.detach())
    x = torch.randn(4, 37)
    with torch.no_grad():
        assert torch.allclose(weight_only_matmul_reference(x, kw), m(x), rtol=1e-5, atol=1e-6)


def test_weight_only_rejects_unquantized():
    with pytest.raises(UnsupportedModuleError):
        pack_weight_only(nn.Linear(4, 4))


@pytest.mark.skipif(not triton_available()[0], reason=f"Triton kernel: {triton_available()[1]}")
@pytest.mark.parametrize("quant", ["uniform4", "affine8", "pwlq", "pwlq3"])
def test_triton_kernel_matches_reference(quant):
    """Runs on CUDA, or on CPU under Triton's interpreter (TRITON_INTERPRET=1) when triton is installed."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(7)
    m = nn.Linear(70, 37)  # K not a multiple of the block, N not a multiple of the block
    apply_mask_(m, "weight", m.weight.detach().abs() > 0.02)
    w = m.weight.detach()
    q = {"uniform4": lambda: UniformWeightQuant.from_weight(w, 4),
         "affine8": lambda: UniformWeightQuant.from_weight(w, 8, symmetric=False),
         "pwlq": lambda: PWLQWeightQuant.from_weight(w, 4),
         "pwlq3": lambda: PWLQWeightQuant.from_weight(w, 3, n_breakpoints=3)}[quant]()
    if quant == "pwlq":
        q.set_bias_correction(torch.full((37,), 0.001), torch.full((37,), 1.01))
    parametrize.register_parametrization(m, "weight", q)
    kw = pack_weight_only(m).to(device)
    x = torch.randn(5, 70, device=device)
    got = weight_only_matmul_triton(x, kw, block_m=16, block_n=16, block_k=32)
    ref = weight_only_matmul_reference(x, kw)
    # fp16 operands in the kernel's dot, fp32 accumulation
    assert float((got - ref).abs().max()) <= 2e-3 * float(ref.abs().max()) + 1e-3

"""CPU weight-only path for group-wise (and per-channel) quantizers: packed codes, exact dequantization."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import ShapeError, UnsupportedModuleError
from prunequant.export.kernels.packed_weight_only import (
    PackedWeightOnlyLinear,
    pack_rows,
    to_packed_weight_only_,
    unpack_rows,
)
from prunequant.quantization.groupwise import GroupPWLQWeightQuant, GroupUniformWeightQuant
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

torch.set_num_threads(1)


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_pack_rows_round_trip(width):
    g = torch.Generator().manual_seed(width)
    u = torch.randint(0, 2 ** width, (5, 37), generator=g)
    p = pack_rows(u, width)
    assert p.dtype == torch.uint8 and p.shape == (5, (37 * width + 7) // 8)
    assert torch.equal(unpack_rows(p, width, 37).long(), u)


def _quantized_linear(make, inp=128, out=16, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(inp, out)
    parametrize.register_parametrization(lin, "weight", make(lin.weight.detach()))
    return lin


MAKERS = {
    "uniform-group-affine-4b-g32": lambda w: GroupUniformWeightQuant.from_weight(w, 4, 32),
    "uniform-group-sym-3b-g64": lambda w: GroupUniformWeightQuant.from_weight(w, 3, 64, symmetric=True),
    "pwlq-group-3b-g128": lambda w: GroupPWLQWeightQuant.from_weight(w, 3, 128),
    "pwlq-group-2bp-4b-g32": lambda w: GroupPWLQWeightQuant.from_weight(w, 4, 32, n_breakpoints=2),
    "uniform-channel-4b": lambda w: UniformWeightQuant.from_weight(w, 4),
    "pwlq-channel-3b": lambda w: PWLQWeightQuant.from_weight(w, 3),
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_packed_layer_matches_fake_quant_exactly(kind):
    lin = _quantized_linear(MAKERS[kind])
    packed = PackedWeightOnlyLinear.from_module(lin, "fc")
    assert torch.equal(packed.dequantized_weight(), lin.weight.detach())
    x = torch.randn(3, 5, 128)
    with torch.no_grad():
        assert torch.equal(packed(x), lin(x))
    # it stores packed codes + parameters only: far below the fp32 weight
    assert packed.storage_bits() < 0.25 * 32 * lin.weight.numel()
    assert not any(b.dtype == torch.float32 and b.numel() == lin.weight.numel() for b in packed.buffers())


def test_packed_storage_matches_group_accounting():
    lin = _quantized_linear(MAKERS["pwlq-group-3b-g128"])
    packed = PackedWeightOnlyLinear.from_module(lin)
    q = lin.parametrizations.weight[0]
    # 3-bit codes live in a 4-bit container, the 1-bit region ids in a 1-bit one
    expect = (4 + 1) * lin.weight.numel() + (q.bits_per_weight(lin.weight.numel()) - 4) * lin.weight.numel() \
        + 32 * lin.bias.numel()
    assert packed.storage_bits() == pytest.approx(expect)


def test_model_conversion_and_errors():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    q = GroupUniformWeightQuant.from_weight(model[0].weight, 4, 32)
    parametrize.register_parametrization(model[0], "weight", q)
    x = torch.randn(2, 64)
    with torch.no_grad():
        ref = model(x)
    assert to_packed_weight_only_(model) == ["0"]
    assert isinstance(model[0], PackedWeightOnlyLinear) and isinstance(model[2], nn.Linear)
    with torch.no_grad():
        assert torch.equal(model(x), ref)
        with pytest.raises(ShapeError):
            model(torch.randn(2, 63))
    with pytest.raises(UnsupportedModuleError, match="plain"):
        PackedWeightOnlyLinear.from_module(nn.Linear(4, 4), "plain")

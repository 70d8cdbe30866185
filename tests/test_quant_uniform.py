"""Uniform quantizers: symmetric/affine, per tensor/channel, codes round trip, STE gradient, bad input."""
import pytest
import torch

from prunequant.errors import ConfigError, LayerError, ShapeError
from prunequant.quantization import (
    UniformWeightQuant,
    affine_qparams,
    check_bits,
    quantize_affine,
    quantize_symmetric,
    symmetric_scale,
    uniform_codes,
    uniform_dequantize,
    uniform_quantize,
)

torch.set_num_threads(1)


def test_symmetric_per_channel_matches_formula():
    w = torch.tensor([[0.5, -1.0, 0.25, 0.0], [2.0, -0.1, 0.3, 1.0]])
    s = symmetric_scale(w, 4, dim=0)
    assert torch.allclose(s, torch.tensor([2 * 1.0 / 15, 2 * 2.0 / 15]))
    q = quantize_symmetric(w, 4, dim=0)
    codes = torch.round(w / s[:, None]).clamp(-8, 7)
    assert torch.equal(q, codes * s[:, None])
    # per tensor uses the global max
    st = symmetric_scale(w, 4, dim=None)
    assert st.dim() == 0 and float(st) == pytest.approx(2 * 2.0 / 15)


def test_affine_keeps_zero_exact_and_covers_range():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(8, 50, generator=g) * 3 + 0.5  # all positive: range is [0, max]
    w[:, :5] = 0.0
    s, z = affine_qparams(w, 3, dim=0)
    assert z.dtype == torch.int32 and bool((z == 0).all())
    q = quantize_affine(w, 3, dim=0)
    assert bool((q[:, :5] == 0).all())
    assert float((q - w).abs().max()) <= float(s.max()) / 2 + 1e-6
    c = uniform_codes(w, 3, s, z, signed=False, dim=0)
    assert int(c.min()) >= 0 and int(c.max()) <= 7


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("dim", [0, None])
def test_codes_round_trip_exact(symmetric, dim):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, 3, 3, generator=g)
    quant = UniformWeightQuant.from_weight(w, 5, symmetric=symmetric, dim=dim)
    q = quant(w)
    assert torch.equal(quant.decode(quant.codes(w)), q)
    assert set(quant.export_state()) == {"scale", "zero_point"}
    assert quant.granularity == ("channel" if dim == 0 else "tensor")
    lev = quant.levels()
    assert lev.shape == ((6 if dim == 0 else 1), 32)
    per_ch = q.reshape(6, -1) if dim == 0 else q.reshape(1, -1)
    d = (per_ch[:, :, None] - lev[:, None, :]).abs().min(-1).values
    assert float(d.max()) < 1e-6  # every output is a level


def test_dequantize_matches_quantize():
    w = torch.linspace(-1, 1, 21).reshape(3, 7)
    s = symmetric_scale(w, 3, dim=0)
    c = uniform_codes(w, 3, s, dim=0)
    assert torch.equal(uniform_dequantize(c, s, dim=0), uniform_quantize(w, 3, s, dim=0))


def test_straight_through_gradient_zero_where_clipped():
    s = torch.tensor(0.1)
    x = torch.tensor([-5.0, -0.33, 0.0, 0.41, 5.0], requires_grad=True)
    y = uniform_quantize(x, 4, s, dim=None)
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert float(y[-1].detach()) == pytest.approx(0.7) and float(y[0].detach()) == pytest.approx(-0.8)


def test_all_zero_channel_is_exact():
    w = torch.zeros(3, 4)
    w[1] = torch.tensor([0.1, -0.2, 0.3, 0.0])
    q = quantize_symmetric(w, 4, dim=0)
    assert bool((q[0] == 0).all()) and bool((q[2] == 0).all())
    assert bool((quantize_affine(torch.zeros(2, 2), 4, dim=0) == 0).all())


@pytest.mark.parametrize("bits", [1, 17, 0, 4.0, True, "4"])
def test_bits_out_of_range(bits):
    with pytest.raises(ConfigError, match="bits"):
        check_bits(bits)
    with pytest.raises(ConfigError):
        UniformWeightQuant.from_weight(torch.randn(2, 2), bits)


def test_bad_weights_named():
    w = torch.randn(3, 3)
    w[1, 1] = float("nan")
    with pytest.raises(LayerError, match="conv9.*NaN"):
        UniformWeightQuant.from_weight(w, 4, name="conv9")
    w[1, 1] = float("inf")
    with pytest.raises(LayerError, match="Inf"):
        UniformWeightQuant.from_weight(w, 4)
    with pytest.raises(LayerError, match="empty"):
        UniformWeightQuant.from_weight(torch.empty(0, 3), 4)
    with pytest.raises(LayerError, match="floating"):
        UniformWeightQuant.from_weight(torch.ones(2, 2, dtype=torch.int64), 4)


def test_wrong_scale_shape():
    with pytest.raises((RuntimeError, ShapeError)):
        uniform_quantize(torch.randn(4, 3), 4, torch.ones(5), dim=0)

"""Activation calibration (top-k median, percentile, min-max), ActFakeQuant, input hooks, bias correction."""
import pytest
import torch
from torch import nn

from prunequant.errors import ConfigError, ShapeError
from prunequant.quantization import (
    ActFakeQuant,
    PWLQWeightQuant,
    RangeObserver,
    UniformWeightQuant,
    apply_bias_correction,
    attach_input_quant,
    bias_correction_terms,
    calibrate_ranges,
    detach_input_quant,
)

torch.set_num_threads(1)


def test_topk_median_matches_reference_rule():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 50, generator=g) * (i + 1) for i in range(3)]
    obs = RangeObserver("topk_median", k=10)
    for b in batches:
        obs.observe(b)
    lo, hi = obs.range()
    # per batch: median (mean of the two middle values) of the 10 largest / 10 smallest; then the batch mean
    exp_hi = sum(float(b.flatten().sort().values[-10:][4:6].mean()) for b in batches) / 3
    exp_lo = sum(float(b.flatten().sort().values[:10][4:6].mean()) for b in batches) / 3
    assert hi == pytest.approx(exp_hi, rel=1e-6) and lo == pytest.approx(exp_lo, rel=1e-6)


def test_percentile_and_minmax():
    x = torch.arange(1, 10001, dtype=torch.float32)
    obs = RangeObserver("percentile", percentile=99.0)
    obs.observe(x)
    assert obs.range() == (pytest.approx(101.0), pytest.approx(9900.0))
    mm = RangeObserver("minmax")
    mm.observe(x[:10])
    mm.observe(-x[:3])
    assert mm.range() == (-3.0, 10.0)
    with pytest.raises(ConfigError):
        RangeObserver("median")
    with pytest.raises(ConfigError):
        RangeObserver("percentile", percentile=20)


def test_act_quant_unsigned_after_relu_and_signed_otherwise():
    q = ActFakeQuant.from_range(0.0, 2.55, 8)
    assert not q.signed and float(q.scale) == pytest.approx(0.01)
    x = torch.tensor([-1.0, 0.0, 0.004, 0.006, 1.0, 3.0], requires_grad=True)
    y = q(x)
    assert torch.allclose(y.detach(), torch.tensor([0.0, 0.0, 0.0, 0.01, 1.0, 2.55]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))
    s = ActFakeQuant.from_range(-3.0, 1.0, 4)
    assert s.signed and int(s.codes(torch.tensor([-3.0])).item()) == -8
    assert float(s.scale) == pytest.approx(6.0 / 15)
    with pytest.raises(ConfigError):
        ActFakeQuant.from_range(0.0, float("nan"), 8)
    with pytest.raises(ConfigError):
        ActFakeQuant(1, True, 0.1)


def test_calibrate_and_attach_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    data = torch.randn(64, 5)
    ranges = calibrate_ranges(model, {"0": model[0], "2": model[2]}, data, method="minmax", batch_size=16)
    assert ranges["0"] == (pytest.approx(float(data.min())), pytest.approx(float(data.max())))
    assert ranges["2"][0] >= 0  # after ReLU
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data, torch.zeros(64)), batch_size=16)
    assert calibrate_ranges(model, {"0": model[0]}, loader, method="minmax")["0"] == ranges["0"]
    attach_input_quant(model[2], ActFakeQuant.from_range(*ranges["2"], 2))
    assert model[2].prunequant_abits == 2
    with torch.no_grad():
        h = model[1](model[0](data))
        assert torch.equal(model(data), model[2](h)) and not torch.equal(model(data), nn.functional.linear(
            h, model[2].weight, model[2].bias))
    detach_input_quant(model[2])
    assert not hasattr(model[2], "prunequant_abits") and not model[2]._forward_pre_hooks
    with pytest.raises(ConfigError):
        calibrate_ranges(model, {"0": model[0]}, None)
    with pytest.raises(ShapeError):
        calibrate_ranges(model, {"0": model[0]}, [("not a tensor", 1)])


@pytest.mark.parametrize("make", [lambda w: PWLQWeightQuant.from_weight(w, 3),
                                  lambda w: UniformWeightQuant.from_weight(w, 3)])
def test_bias_correction_reference_formula(make):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 40, generator=g) * 0.1 + 0.02
    quant = make(w)
    q = quant(w)
    shift, gain = bias_correction_terms(w, q)
    assert torch.allclose(shift, w.mean(1) - q.mean(1), atol=1e-7)
    assert torch.allclose(gain, w.std(1) / q.std(1), rtol=1e-5)
    corrected = apply_bias_correction(q, shift, gain)
    assert torch.allclose(corrected, (q + (w.mean(1) - q.mean(1))[:, None]) * (w.std(1) / q.std(1))[:, None],
                          atol=1e-6)
    assert torch.allclose(corrected.std(1), w.std(1), rtol=1e-4)  # std restored (mean becomes mean(w)*gain)
    codes = quant.codes(w)
    quant.set_bias_correction(shift, gain)
    assert torch.equal(quant.codes(w)["codes"], codes["codes"])  # integers unchanged
    assert torch.equal(quant.decode(codes), quant(w))
    assert torch.allclose(quant(w), corrected, atol=1e-6)
    assert {"bc_shift", "bc_gain"} <= set(quant.export_state())


def test_bias_correction_constant_quantized_channel_keeps_gain_one():
    w = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.3, -0.2, 0.1, 0.0]])
    q = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.25, -0.25, 0.0, 0.0]])
    shift, gain = bias_correction_terms(w, q)
    assert float(gain[0]) == 1.0 and float(shift[0]) == pytest.approx(0.0)

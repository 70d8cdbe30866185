"""Activation range estimators chosen per layer by measured output error (calibration="auto")."""
import logging

import torch
from torch import nn

from prunequant import quantize_
from prunequant.quantization import PWLQConfig
from prunequant.quantization.base import ActFakeQuant
from prunequant.quantization.calibration import (
    CALIBRATION_METHODS,
    ESTIMATORS,
    RangeObserver,
    calibrate_ranges,
    fake_quant_grid,
    mse_range,
)

torch.set_num_threads(1)
OUTLIERS = [3, 17, 41]


class Block(nn.Module):
    """A transformer-like MLP block over token features (batch, tokens, 64)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(128, 64)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _outlier_block():
    """A few massive input channels (like the massive activations of LLMs) that the next layer nearly ignores."""
    torch.manual_seed(0)
    model = Block().eval()
    with torch.no_grad():
        model.fc1.weight[:, OUTLIERS] *= 0.005
    return model


def _tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, 64, generator=g)
    x[..., OUTLIERS] = 40.0 + torch.randn(n, 16, len(OUTLIERS), generator=g)
    return x


def _rel_error(model, ref, x):
    with torch.no_grad():
        y, y_ref = model(x), ref(x)
    return float((y - y_ref).norm() / y_ref.norm())


def test_auto_beats_topk_median_on_outlier_channels_and_the_bad_estimator_warns(caplog):
    calib, test = _tokens(64, 1), _tokens(64, 2)
    ref = _outlier_block()
    errors, results = {}, {}
    for method in ("topk_median", "auto"):
        model = _outlier_block()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prunequant"):
            results[method] = quantize_(model, PWLQConfig(wbits=8, abits=6, calibration=method),
                                        calibration_data=calib)
        errors[method] = _rel_error(model, ref, test)
        warned = [r.getMessage() for r in caplog.records if "fidelity below" in r.getMessage()]
        if method == "topk_median":
            assert warned and "fc1" in warned[0]  # names the layer whose input range is wrong
        else:
            assert not warned
    assert errors["auto"] < 0.25 * errors["topk_median"], errors  # held-out tokens, a clear margin
    assert results["auto"].fidelity.output_cosine > 0.99 > results["topk_median"].fidelity.output_cosine
    lo, hi = results["auto"].act_ranges["fc1"]
    assert hi < 20 < results["topk_median"].act_ranges["fc1"][1]  # auto clipped the ignored outliers


def test_auto_keeps_outliers_that_carry_signal():
    """Same data, but the next layer uses the outlier channels: clipping them would cost output error."""
    torch.manual_seed(0)
    model = Block().eval()
    with torch.no_grad():
        model.fc1.weight[:, OUTLIERS] *= 2.0
    calib = _tokens(64, 1)
    choices = {}
    ranges = calibrate_ranges(model, {"fc1": model.fc1}, calib, method="auto", bits=6, choices=choices)
    assert ranges["fc1"][1] > 30
    errs = choices["fc1"].errors
    assert errs[choices["fc1"].estimator] == min(errs.values())
    assert set(ESTIMATORS) <= set(errs)


def test_auto_is_the_least_output_error_on_calibration_data_for_every_layer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 5)).eval()
    x = torch.randn(48, 3, 8, 8)
    mods = {"0": model[0], "2": model[2], "5": model[5]}
    choices = {}
    auto = calibrate_ranges(model, mods, x, method="auto", bits=4, choices=choices)
    for name in mods:
        errs = choices[name].errors
        assert auto[name] == choices[name].range and errs[choices[name].estimator] == min(errs.values())
        for est in ESTIMATORS:  # every classical estimator is a candidate, so auto is never worse on this data
            assert errs[choices[name].estimator] <= errs[est]
    assert auto["2"][0] >= 0  # after ReLU: unsigned range


def test_grid_fake_quant_matches_the_activation_quantizer():
    x = torch.randn(1000) * 3
    ranges = [(-4.0, 2.0), (0.0, 5.0), (0.5, 1.5), (-1e-3, 7.0)]
    q = fake_quant_grid(x, ranges, 5)
    for i, (lo, hi) in enumerate(ranges):
        assert torch.equal(q[i], ActFakeQuant.from_range(lo, hi, 5)(x))


def test_mse_estimator_clips_a_gaussian_and_lowers_its_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    lo, hi = mse_range(x, float(x.min()), float(x.max()), 4)
    assert 1.5 < hi < float(x.max()) and lo == -hi
    err = lambda r: float((ActFakeQuant.from_range(*r, 4)(x) - x).square().mean())  # noqa: E731
    assert err((lo, hi)) < 0.7 * err((float(x.min()), float(x.max())))
    obs = RangeObserver("mse", bits=4)
    for chunk in x.split(5000):
        obs.observe(chunk)
    assert obs.range() == (lo, hi)
    assert "auto" in CALIBRATION_METHODS and "mse" in CALIBRATION_METHODS

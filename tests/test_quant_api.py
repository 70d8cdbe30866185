"""quantize_(model, PWLQConfig(...)): CNN, LSTM/GRU, Transformer, per-layer result, skip/keep_8bit, finalize,
codes round trip, analysis.report bits, and clear errors for bad layers and configs."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from conftest import make_cnn
from prunequant import quantize_
from prunequant.analysis import report
from prunequant.errors import ConfigError, LayerError
from prunequant.models import DigitsCNN, ResNetSmall
from prunequant.quantization import (
    ActFakeQuant,
    PWLQConfig,
    PWLQWeightQuant,
    UniformWeightQuant,
    WeightFakeQuant,
    finalize_quantization_,
)

torch.set_num_threads(1)


def _cnn(seed=0, cls=DigitsCNN):
    return make_cnn(seed, cls, random_bn_stats=True)


def _quant(module, name="weight"):
    return next(p for p in module.parametrizations[name] if isinstance(p, WeightFakeQuant))


def test_quantize_cnn_pwlq_default_pipeline():
    model = _cnn()
    ref = copy.deepcopy(model)
    x = torch.rand(64, 1, 8, 8)
    res = quantize_(model, PWLQConfig(wbits=8, abits=8), calibration_data=x, lloyd_max=True)
    assert len(res.folded_bn) == 3 and len(res.layers) == 4
    with torch.no_grad():
        y, y_ref = model(x), ref(x)
    assert float((y - y_ref).abs().max()) < 0.05 * float(y_ref.abs().max())  # 8-bit: close to float
    for r in res.layers:
        assert r.scheme == "pwlq" and r.bits == 8 and r.act_bits == 8 and r.levels == 511
        assert 0 < r.breakpoint_ratio[0] < 1 and 0 < r.center_fraction < 1  # full-range search (issue 15)
        assert r.mse_before_bc < r.uniform_mse
        assert r.lloyd_max_mse is not None and r.lloyd_max_mse <= r.mse_before_bc * (1 + 1e-9)
    conv = model.features[0]
    assert isinstance(_quant(conv), PWLQWeightQuant) and isinstance(conv.input_quant, ActFakeQuant)
    assert not conv.input_quant.signed  # input images are >= 0
    assert isinstance(model.features[9].input_quant, ActFakeQuant)  # pool input, as in the paper
    rep = report(model, x[:1])
    bits = {row.name: (row.weight_bits, row.act_bits) for row in rep.rows}
    assert bits["features.0"] == (8, 8) and bits["classifier"] == (8, 8)
    assert set(res.to_dict()) >= {"config", "layers", "folded_bn", "act_ranges"}


def test_codes_decode_to_the_forward_weight_and_finalize():
    model = _cnn(1)
    quantize_(model, PWLQConfig(wbits=4, abits=None, n_breakpoints=2))
    conv = model.features[3]
    quant = _quant(conv)
    raw = conv.parametrizations["weight"].original
    assert torch.equal(quant.decode(quant.codes(raw)), conv.weight)
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        y = model(x)
        finalize_quantization_(model)
        assert torch.equal(model(x), y)
    assert not parametrize.is_parametrized(conv) and conv.prunequant_wbits == 4


def test_uniform_scheme_skip_keep8_and_per_tensor():
    model = _cnn(2)
    cfg = PWLQConfig(wbits=3, abits=4, scheme="uniform", granularity="tensor", skip=["classifier"],
                     keep_8bit=["features.0"], bias_correction=False)
    res = quantize_(model, cfg, calibration_data=torch.rand(32, 1, 8, 8))
    by = {r.name: r for r in res.layers}
    assert res.skipped == ["classifier.weight"] and "classifier.weight" not in by
    assert not parametrize.is_parametrized(model.classifier) and not hasattr(model.classifier, "input_quant")
    assert by["features.0.weight"].bits == 8 and by["features.0.weight"].act_bits == 8
    assert by["features.3.weight"].bits == 3 and by["features.3.weight"].act_bits == 4
    q = _quant(model.features[3])
    assert isinstance(q, UniformWeightQuant) and q.granularity == "tensor"
    assert len(torch.unique(model.features[3].weight)) <= 8


def test_bias_correction_changes_only_scale_and_offset():
    model, plain = _cnn(3), _cnn(3)
    quantize_(model, PWLQConfig(wbits=3, abits=None, bias_correction=True))
    quantize_(plain, PWLQConfig(wbits=3, abits=None, bias_correction=False))
    a, b = _quant(model.features[3]), _quant(plain.features[3])
    w = model.features[3].parametrizations["weight"].original
    assert torch.equal(a.codes(w)["codes"], b.codes(w)["codes"])
    assert a.bc_shift is not None and b.bc_shift is None
    assert torch.allclose(model.features[3].weight.flatten(1).std(1), w.flatten(1).std(1), rtol=1e-4)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_weights_are_quantized(cell):
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cell(6, 12, num_layers=2, batch_first=True)
            self.head = nn.Linear(12, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    model = Net().eval()
    x = torch.randn(16, 7, 6)
    res = quantize_(model, PWLQConfig(wbits=4, abits=8), calibration_data=x)
    names = {r.name for r in res.layers}
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"} <= names
    # the recurrent forward uses the quantized weights: equals a plain copy loaded with them
    plain = Net().eval()
    with torch.no_grad():
        for n, _ in plain.rnn.named_parameters():
            getattr(plain.rnn, n).copy_(getattr(model.rnn, n))
        plain.head.weight.copy_(model.head.weight)
        plain.head.bias.copy_(model.head.bias)
        h = model.rnn(model.rnn.input_quant(x))[0][:, -1]
        assert torch.equal(plain.rnn(model.rnn.input_quant(x))[0][:, -1], h)
    assert model.rnn.prunequant_abits == 8


def test_transformer_linear_layers_weight_only():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(6, 16)
            self.enc = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.head = nn.Linear(16, 1)

        def forward(self, x):
            return self.head(self.enc(self.inp(x)).mean(1))

    model = Net().eval()
    x = torch.randn(8, 5, 6)
    res = quantize_(model, PWLQConfig(wbits=6, abits=8), calibration_data=x)
    by = {r.name: r for r in res.layers}
    for n in ("enc.self_attn.in_proj_weight", "enc.self_attn.out_proj.weight", "enc.linear1.weight",
              "enc.linear2.weight"):
        assert by[n].bits == 6 and by[n].act_bits is None
    assert by["inp.weight"].act_bits == 8
    w = model.enc.self_attn.in_proj_weight
    assert max(len(torch.unique(w[i])) for i in range(w.shape[0])) <= 127
    with torch.no_grad():
        model.train()
        slow = model(x)  # no fused fast path in train mode (dropout 0): same numbers as eval
        model.eval()
        assert torch.allclose(model(x), slow, atol=1e-5)


def test_bad_layers_and_configs_are_named():
    model = _cnn()
    with torch.no_grad():
        model.features[3].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(LayerError, match="features.3.weight.*NaN"):
        quantize_(model, PWLQConfig(abits=None))
    assert not parametrize.is_parametrized(model.features[0])  # nothing changed
    model = _cnn()
    with torch.no_grad():
        model.classifier.weight.fill_(0.25)
    with pytest.raises(LayerError, match="classifier.weight.*zero variance"):
        quantize_(model, PWLQConfig(abits=None))
    quantize_(model, PWLQConfig(abits=None, skip=["classifier"]))  # skipping it works
    with pytest.raises(ConfigError, match="calibration_data"):
        quantize_(_cnn(), PWLQConfig(abits=8))
    for bad in ({"wbits": 1}, {"wbits": 17}, {"abits": 0}, {"variant": "x"}, {"n_breakpoints": 4},
                {"breakpoint_method": "gaussian_closed", "n_breakpoints": 2}, {"calibration": "mean"},
                {"granularity": "row"}, {"skip": "classifier"}):
        with pytest.raises(ConfigError):
            PWLQConfig(**bad)
    with pytest.raises(LayerError, match="already quantized"):
        quantize_(model, PWLQConfig(abits=None, skip=["classifier"]))
    with pytest.raises(LayerError, match="no Linear"):
        quantize_(nn.Sequential(nn.ReLU()), PWLQConfig(abits=None))


def test_resnet_quantizes_every_conv():
    model = _cnn(cls=ResNetSmall)
    res = quantize_(model, PWLQConfig(wbits=4, abits=8), calibration_data=torch.rand(32, 1, 8, 8))
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(res.layers) == len(convs) and len(res.folded_bn) == 9

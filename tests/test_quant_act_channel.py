"""Per-channel and per-token activation quantization (``act_granularity``): the quantizer, the per-layer choice
("auto"), the file, the cost model, ONNX and the fast-kernel fallback."""
import copy

import pytest
import torch
from torch import nn

import prunequant
from prunequant import quantize_
from prunequant.analysis import report
from prunequant.core.cost import act_quantizer_state_bits
from prunequant.errors import ConfigError, ShapeError, UnsupportedModuleError
from prunequant.quantization import PWLQConfig, UniformConfig
from prunequant.quantization.base import ActFakeQuant, quantizer_from_spec
from prunequant.quantization.calibration import CHANNEL_MIN_GAIN, calibrate_act_quantizers

torch.set_num_threads(1)
HUGE = [2, 9, 20]


class Block(nn.Module):
    """Transformer-like MLP block over token features (batch, tokens, 32) with a classifier head."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.fc2(torch.relu(self.fc1(x)))
        return self.head(h.mean(1))


def _block():
    """fc1's weights on the huge channels are 10x smaller, so each huge channel adds ~4x a normal channel's signal
    to the output: dropping (clipping) them or flattening the others both cost."""
    torch.manual_seed(0)
    model = Block().eval()
    with torch.no_grad():
        model.fc1.weight[:, HUGE] /= 10
    return model


def _tokens(n=128, seed=0, huge=40.0):
    """Gaussian token features with a few huge channels that carry signal (the next layer's weights are not
    small there): every per-tensor range either clips them or flattens the other channels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 32, generator=g)
    x[..., HUGE] *= huge
    return x


def _rel(y, ref):
    return float((y - ref).norm() / ref.norm())


@torch.no_grad()
def _quantized(gran, abits=8, method="auto", config=UniformConfig):
    m = _block()
    res = quantize_(m, config(wbits=8, abits=abits, calibration=method, act_granularity=gran,
                              bias_correction=False), calibration_data=_tokens())
    return m, res


# --------------------------------------------------------------------------------------------- quantizer
def test_channel_and_token_quantizers_round_trip_bit_exactly():
    x = torch.randn(5, 7, 6) * torch.tensor([1, 50, 1, 1, 3, 0.1])
    lo, hi = x.flatten(0, 1).amin(0), x.flatten(0, 1).amax(0)
    ch = ActFakeQuant.from_channel_ranges(lo, hi, 6, channel_dim=-1)
    assert ch.granularity == "channel" and ch.scale.shape == (6,) and ch.signed
    tok = ActFakeQuant(4, True, None, granularity="token", channel_dim=-1, ratio=0.8)
    for q in (ch, tok):
        r = quantizer_from_spec(q.spec())
        assert torch.equal(r(x), q(x)) and torch.equal(r.codes(x), q.codes(x))
        assert ActFakeQuant.from_layout(q.layout()).layout() == q.layout()
    # each channel on its own grid: the small channels keep their resolution next to the huge one
    assert (ch(x) - x)[..., 0].abs().max() < 0.2 * x[..., 0].abs().max() / 4
    # per-token: every row on its own scale (codes reach the top of the range in every row)
    assert bool((tok.codes(x).abs().amax(-1) >= 7).all())
    # a per-tensor quantizer keeps the old 2-key layout (files written before are read unchanged)
    assert ActFakeQuant.from_range(-1, 2, 8).layout() == {"bits": 8, "signed": True}


def test_channel_quantizer_errors_name_the_problem():
    ch = ActFakeQuant.from_channel_ranges(torch.zeros(4), torch.ones(4), 8, channel_dim=1)
    assert not ch.signed  # all lows >= 0: unsigned codes 0..255
    with pytest.raises(ShapeError, match="4 scales, the input has 3 channels"):
        ch(torch.rand(2, 3, 5, 5))
    with pytest.raises(ConfigError, match="granularity"):
        ActFakeQuant(8, True, 1.0, granularity="row")
    with pytest.raises(ConfigError, match="ratio"):
        ActFakeQuant(8, True, None, granularity="token", ratio=1.5)
    with pytest.raises(ConfigError, match="act_granularity"):
        PWLQConfig(act_granularity="row")
    # an always-zero channel still gets a positive scale (the largest of the others)
    z = ActFakeQuant.from_channel_ranges(torch.tensor([0.0, -1.0]), torch.tensor([0.0, 2.0]), 8, -1)
    assert float(z.scale[0]) == float(z.scale[1]) > 0


# --------------------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("abits", [8, 6, 4])
def test_per_channel_and_per_token_beat_every_per_tensor_estimator_on_signal_outliers(abits):
    ref_model, xt = _block(), _tokens(64, seed=1)
    with torch.no_grad():
        ref = ref_model(xt)
    tensor_errs = {}
    for method in ("auto", "minmax", "topk_median", "mse"):
        m, _ = _quantized("tensor", abits, method)
        with torch.no_grad():
            tensor_errs[method] = _rel(m(xt), ref)
    m, res = _quantized("channel", abits)
    with torch.no_grad():
        ch = _rel(m(xt), ref)
    m, _ = _quantized("token", abits)
    with torch.no_grad():
        tok = _rel(m(xt), ref)
    assert set(res.act_granularity.values()) == {"channel"}
    assert ch < 0.5 * min(tensor_errs.values()), (ch, tensor_errs)
    assert tok < min(tensor_errs.values()), (tok, tensor_errs)


def test_auto_granularity_chooses_per_channel_only_where_it_cuts_the_layer_error():
    torch.manual_seed(0)
    model = _block()
    x = _tokens()
    mods = {"fc1": model.fc1, "fc2": model.fc2}
    cal = calibrate_act_quantizers(model, mods, x, method="auto", granularity="auto", bits=8)
    # fc1's input has the huge channels: per-channel wins; fc2's (post-ReLU) input has none of them
    assert cal["fc1"].granularity == "channel"
    for c in cal.values():
        t_best = min(v for k, v in c.errors.items() if not k.startswith(("channel", "held-out")))
        c_best = min(v for k, v in c.errors.items() if k.startswith("channel"))
        if c.granularity == "channel":  # lower in-sample error AND on held-out calls (ranges fitted on the others)
            assert c_best < (1 - CHANNEL_MIN_GAIN) * t_best
            assert c.errors["held-out channel"] < (1 - CHANNEL_MIN_GAIN) * c.errors["held-out tensor"]
        else:
            assert c.estimator in c.errors and c.errors[c.estimator] == t_best
    # a layer with i.i.d. Gaussian inputs keeps one per-tensor scale: per-channel min/max look better in-sample
    # (nothing clipped) but worse on held-out calls
    lin = nn.Linear(32, 16)
    g = calibrate_act_quantizers(lin, {"": lin}, torch.randn(256, 32), granularity="auto", bits=8)[""]
    assert g.granularity == "tensor"
    assert g.errors["held-out channel"] > g.errors["held-out tensor"]


# --------------------------------------------------------------------------------------------- file and cost
@pytest.mark.parametrize("gran", ["channel", "token", "auto"])
def test_file_round_trip_and_report_bytes(tmp_path, gran):
    m, res = _quantized(gran, 6, config=PWLQConfig)
    x = _tokens(16, seed=2)
    path = tmp_path / "m.pq"
    saved = prunequant.save(m, path)
    back = prunequant.load(path, model=Block())
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
    for name, g in res.act_granularity.items():
        assert back.get_submodule(name).input_quant.granularity == g
    assert report(m, x).total.bytes == saved.file_bytes == path.stat().st_size
    # the other two containers: training-state file and the deployment artifact
    from prunequant import io
    from prunequant.export.artifact.api import export, load_compressed

    io.save(m, tmp_path / "s.safetensors")
    export(m, tmp_path / "a.pqa")
    for other in (io.load(tmp_path / "s.safetensors", model=Block()),
                  load_compressed(tmp_path / "a.pqa", model=Block())):
        with torch.no_grad():
            assert torch.equal(other(x), m(x))
    # the cost model charges every per-channel scale; dynamic per-token scales store nothing but the zero point
    q = m.fc1.input_quant
    expected = {"channel": 32 * 32 + 32, "token": 32}.get(q.granularity, 32 + 32)
    assert act_quantizer_state_bits(q) == expected


def test_conv_inputs_use_channel_dim_1_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    x = torch.randn(32, 4, 8, 8)
    x[:, 1] *= 30
    res = quantize_(model, UniformConfig(wbits=8, abits=8, act_granularity="channel"), calibration_data=x)
    assert model[0].input_quant.channel_dim == 1 and model[0].input_quant.scale.shape == (4,)
    assert model[2].input_quant.scale.shape == (8,) and model[5].input_quant.channel_dim == -1
    assert res.act_granularity["0"] == "channel"
    prunequant.save(model, tmp_path / "c.pq")
    back = prunequant.load(tmp_path / "c.pq", model=nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 3)))
    with torch.no_grad():
        assert torch.equal(back(x[:4]), model(x[:4]))


# --------------------------------------------------------------------------------------------- deployment
def test_onnx_per_channel_qdq_matches_and_per_token_is_refused_naming_the_layer(tmp_path):
    pytest.importorskip("onnxruntime")
    from prunequant.export.onnx_export import export_onnx

    m, _ = _quantized("channel", 8)
    x = _tokens(8, seed=3)
    info = export_onnx(m, tmp_path / "c.onnx", x)  # runs in onnxruntime and checks parity with PyTorch
    # per-channel activation scales as float Div/Round/Clip/Mul; those layers' weights dequantized (a Q/DQ weight
    # lets onnxruntime fuse an int8-activation MatMulNBits that drops the per-channel scales: 9% error)
    assert info["nodes"].get("Round", 0) == 3 and info["nodes"].get("DequantizeLinear", 0) == 0
    assert info["top1_agreement"] == 1.0 and info["rel_err"] < 1e-5
    m, _ = _quantized("token", 8)
    with pytest.raises(UnsupportedModuleError, match="layer 'fc1'.*per-token"):
        export_onnx(m, tmp_path / "t.onnx", x)
    assert not (tmp_path / "t.onnx").exists()


def test_int8_kernels_fall_back_for_per_channel_inputs():
    from prunequant.export.select import eligible_paths, optimize

    m, _ = _quantized("channel", 8)
    reason = eligible_paths(m.fc1)["int8"]
    assert reason is not None and "per channel" in reason
    fast, choices = optimize(copy.deepcopy(m), _tokens(4, seed=4), autotune=False)
    assert all(c.path != "int8" for c in choices)
    with torch.no_grad():
        x = _tokens(4, seed=4)
        assert torch.allclose(fast(x), m(x), atol=1e-5)


def test_cli_act_granularity_option(tmp_path):
    import json

    import numpy as np

    from conftest import run_cli

    (tmp_path / "model.py").write_text("from torch import nn\n\ndef build():\n"
                                       "    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))\n")
    g = np.random.default_rng(0)
    for split, n in (("train", 240), ("test", 80)):
        x = g.normal(size=(n, 12)).astype(np.float32)
        x[:, 0] *= 30
        np.savez(tmp_path / f"{split}.npz", x=x, y=x[:, 1:4].argmax(1))
    out = tmp_path / "q"
    code, _, _ = run_cli(["quantize", f"{tmp_path}/model.py:build", "--data", tmp_path / "train.npz", "--test",
                          tmp_path / "test.npz", "--wbits", "8", "--abits", "6", "--act-granularity", "channel",
                          "--out", out])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["total"]["bytes_file"] == (out / "model.pq").stat().st_size
    assert rep["metric"]["after"] == rep["metric"]["reloaded"]
    back = prunequant.load(out / "model.pq", model=nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)))
    assert back[0].input_quant.granularity == "channel" and back[0].input_quant.scale.shape == (12,)
    assert run_cli(["quantize", f"{tmp_path}/model.py:build", "--data", tmp_path / "train.npz",
                    "--act-granularity", "row", "--out", tmp_path / "bad"])[0] == 2

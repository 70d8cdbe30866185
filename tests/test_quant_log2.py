"""Power-of-two (log2) weights: the quantizer's maths, quantize_ with Log2Config, artifact round trip, ONNX export
(Q/DQ from its int8 form at <= 4 bits, dequantized above), fast int8 path, and log2 as a joint candidate."""
import pytest
import torch
from torch import nn

from conftest import make_cnn
from prunequant import quantize_
from prunequant.core.chain import WeightChain
from prunequant.errors import ConfigError, LayerError
from prunequant.export import export, load_compressed
from prunequant.quantization import Log2Config, Log2WeightQuant
from prunequant.quantization.log2 import log2_codes, log2_dequantize, log2_quantize
from prunequant.quantization.uniform import quantize_symmetric

torch.set_num_threads(1)


def test_levels_are_signed_powers_of_two_and_rounding_is_to_the_nearest_level():
    s = torch.tensor([1.0])
    w = torch.tensor([[1.0, 0.8, 0.74, 0.6, 0.3, 0.2, 0.0, -0.5, -3.0, 0.008, 0.0078]])
    q = log2_quantize(w, 4, s, dim=0)  # M = 7 levels: 1, 1/2, ..., 1/64
    assert q.tolist() == [[1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.0, -0.5, -1.0, 2 ** -6, 0.0]]  # 0.75 splits 1 | 1/2
    c = log2_codes(w, 4, s, dim=0)
    assert int(c.abs().max()) <= 7 and torch.equal(log2_dequantize(c, s, dim=0), q)
    lev = Log2WeightQuant(3, torch.tensor([2.0])).levels()
    assert lev.tolist() == [[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]]


def test_straight_through_gradient_inside_the_range():
    w = torch.tensor([[0.3, -0.7, 5.0]], requires_grad=True)
    log2_quantize(w, 4, torch.tensor([1.0]), dim=0).sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0, 0.0]]


def test_scale_search_lowers_the_error_and_beats_max_scaling():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    base = ((Log2WeightQuant.from_weight(w, 4, search=1)(w) - w) ** 2).mean()
    searched = ((Log2WeightQuant.from_weight(w, 4, search=8)(w) - w) ** 2).mean()
    assert searched < base


def test_quantize_with_log2config_on_the_digits_cnn():
    model = make_cnn(0, random_bn_stats=True)
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    res = quantize_(model, Log2Config(wbits=4, abits=8), calibration_data=x)
    assert len(res.layers) == 4 and all(r.scheme == "log2" and r.bits == 4 and r.levels == 15 for r in res.layers)
    assert res.config["scheme"] == "log2"
    with torch.no_grad():
        y = model(x)
    assert float((y - ref).abs().max()) < 0.5 * float(ref.abs().max())
    assert (y.argmax(1) == ref.argmax(1)).float().mean() > 0.7
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            assert isinstance(WeightChain(mod, "weight").quantizer, Log2WeightQuant)


def test_log2_layer_error_vs_uniform_is_reported_honestly():
    """log2 at 4 bits has a denser grid near 0 and a coarser one near max|w|: on Gaussian-like weights its MSE is
    within a small factor of uniform's (docs/log2.md has the measured table)."""
    torch.manual_seed(0)
    w = torch.randn(32, 128)
    log2 = float(((Log2WeightQuant.from_weight(w, 4)(w) - w) ** 2).mean())
    uni = float(((quantize_symmetric(w, 4, 0) - w) ** 2).mean())
    assert 0.3 < log2 / uni < 3.0


def test_artifact_round_trip_is_bit_exact_and_small(tmp_path):
    model = make_cnn(1, random_bn_stats=True)
    x = torch.rand(16, 1, 8, 8)
    quantize_(model, Log2Config(wbits=4, abits=8, bias_correction=False), calibration_data=x)
    res = export(model, tmp_path / "log2.pq")
    assert {e.bits for e in res.entries if e.kind == "quantized"} <= {4.0, 3.0}  # codes at their real width
    loaded = load_compressed(tmp_path / "log2.pq")
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


@pytest.mark.parametrize("bits,qdq", [(4, True), (5, False)])
def test_onnx_export_qdq_at_4_bits_dequantized_above(tmp_path, bits, qdq):
    pytest.importorskip("onnxruntime")
    from prunequant.export.onnx_export import export_onnx

    model = make_cnn(2, random_bn_stats=True)
    x = torch.rand(4, 1, 8, 8)
    quantize_(model, Log2Config(wbits=bits, abits=None, bias_correction=False))
    info = export_onnx(model, tmp_path / "m.onnx", x)  # raises if onnxruntime differs beyond its tolerance
    assert (info["nodes"].get("DequantizeLinear", 0) >= 4) == qdq


def test_int8_fast_path_uses_the_exact_codes():
    from prunequant.export.kernels import Int8Linear, int8_weight

    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    quantize_(lin, Log2Config(wbits=4, abits=None, bias_correction=False))
    codes, scales = int8_weight(lin)
    assert torch.equal(codes.float() * scales[:, None], lin.weight.detach())
    x = torch.randn(3, 16)
    assert float((Int8Linear.from_module(lin)(x) - lin(x)).abs().max()) < 0.05 * float(lin(x).abs().max())


def test_log2_is_a_joint_candidate(tmp_path):
    from prunequant.api import prune_quantize_
    from prunequant.joint import JointConfig, SoftMixWeightQuant
    from prunequant.joint.config import joint_schemes
    from prunequant.joint.transform import finalize_, harden_

    assert "log2" in joint_schemes()
    torch.manual_seed(0)
    model = make_cnn(3)
    x = torch.rand(8, 1, 8, 8)
    prune_quantize_(model, JointConfig(weight_bits=(3, 4), weight_scheme=("log2", "uniform"), prune=False,
                                       quantize_acts=False, granularity="channel"),
                    calibration=[(x,)], example_input=x[:1])
    wqs = [m for m in model.modules() if isinstance(m, SoftMixWeightQuant)]
    assert wqs and all(q.schemes == ("log2", "uniform") for q in wqs)
    with torch.no_grad():
        for q in wqs:
            q.mixture.logits.copy_(torch.tensor([1.0, 0.0]))  # pick the log2 candidate
    harden_(model)
    model.eval()
    with torch.no_grad():
        hard = model(x)
    finalize_(model)
    with torch.no_grad():
        assert torch.equal(model(x), hard)
    chains = [WeightChain(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(isinstance(c.quantizer, Log2WeightQuant) and c.quantizer.bits == 3 for c in chains)
    export(model, tmp_path / "j.pq")
    with torch.no_grad():
        assert torch.equal(load_compressed(tmp_path / "j.pq").eval()(x), hard)


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="scale_search"):
        Log2Config(scale_search=0)
    with pytest.raises(ConfigError, match="wbits"):
        Log2Config(wbits=1)
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(LayerError, match="weight"):
        quantize_(lin, Log2Config(abits=None))

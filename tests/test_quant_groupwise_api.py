"""Group-wise weight-only quantization through the public API: configs, report/cost model, artifact round trip,
the packed CPU weight-only path."""
import pytest
import torch
from torch import nn

from prunequant import quantize_
from prunequant.analysis.report import report
from prunequant.core.chain import WeightChain
from prunequant.errors import ConfigError, LayerError
from prunequant.quantization import PWLQConfig, UniformConfig
from prunequant.quantization.groupwise import GroupPWLQWeightQuant, GroupUniformWeightQuant

torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64), nn.GELU(), nn.Linear(64, 8)).eval()


def _fc_layers(m):
    return [m[0], m[2], m[4]]


@pytest.mark.parametrize("config,cls,bpw", [
    (UniformConfig(wbits=4, abits=None, symmetric=False, group_size=32, bias_correction=False),
     GroupUniformWeightQuant, 4 + 24 / 32),
    (UniformConfig(wbits=4, abits=None, group_size=64, bias_correction=False), GroupUniformWeightQuant, 4 + 16 / 64),
    (PWLQConfig(wbits=3, abits=None, group_size=64, bias_correction=False), GroupPWLQWeightQuant, 3 + 1 + 32 / 64),
    (PWLQConfig(wbits=3, abits=None, scheme="uniform", uniform_symmetric=False, group_size=32,
                bias_correction=False), GroupUniformWeightQuant, 4 - 1 + 24 / 32),
])
def test_configs_attach_group_quantizers_and_the_report_counts_every_parameter(config, cls, bpw):
    m = _mlp()
    x = torch.randn(5, 64)
    quantize_(m, config)
    for lin in _fc_layers(m):
        q = WeightChain(lin, "weight").quantizer
        assert isinstance(q, cls) and q.group_size == config.group_size
    r = report(m, x)
    for name, lin in zip(("0", "2", "4"), _fc_layers(m)):
        n = lin.weight.numel()
        # report bytes = weight at all-in bits (codes + per-group parameters) + fp32 bias
        assert r.row(name).bytes == pytest.approx((bpw * n + 32 * lin.bias.numel()) / 8, abs=1)


def test_bias_correction_stays_per_output_channel_and_is_counted():
    m = _mlp()
    quantize_(m, PWLQConfig(wbits=4, abits=None, group_size=32))  # bias correction on (default)
    q = WeightChain(m[0], "weight").quantizer
    assert q.bc_shift is not None and q.bc_shift.shape == (128,)
    n = m[0].weight.numel()
    assert q.bits_per_weight(n) == pytest.approx(5 + 32 / 32 + 2 * 32 * 128 / n)


def test_bad_group_configs_and_layers_are_named():
    with pytest.raises(ConfigError, match="group_size"):
        UniformConfig(group_size=0)
    with pytest.raises(ConfigError, match="granularity"):
        PWLQConfig(group_size=32, granularity="tensor")
    with pytest.raises(ConfigError, match="8-bit"):
        UniformConfig(wbits=12, group_size=32)
    m = nn.Sequential(nn.Linear(40, 8))
    with pytest.raises(LayerError, match="0.weight.*not a multiple of group_size 32"):
        quantize_(m, UniformConfig(wbits=4, abits=None, group_size=32))


def test_artifact_round_trip_is_exact_and_stores_group_parameters(tmp_path):
    from prunequant.export import export, load_compressed

    m = _mlp()
    x = torch.randn(7, 64)
    quantize_(m, PWLQConfig(wbits=3, abits=None, group_size=32, bias_correction=False))
    with torch.no_grad():
        ref = m(x)
    res = export(m, tmp_path / "m.pq")
    plain = _mlp(seed=1)
    back = load_compressed(tmp_path / "m.pq", model=plain)
    with torch.no_grad():
        assert torch.equal(back(x), ref)
    # the weights are stored at 3-bit codes + 1-bit region ids, not as floats
    n_w = sum(lin.weight.numel() for lin in _fc_layers(m))
    assert res.payload_bytes < (5 * n_w) / 8 + 4 * 1024
    quantized = [e for e in res.entries if e.kind == "quantized"]
    assert len(quantized) == 3 and all(e.bits == 4 for e in quantized)


def test_packed_weight_only_model_runs_the_quantized_mlp_exactly():
    from prunequant.export.kernels.packed_weight_only import PackedWeightOnlyLinear, to_packed_weight_only_

    m = _mlp()
    x = torch.randn(3, 64)
    quantize_(m, UniformConfig(wbits=4, abits=None, symmetric=False, group_size=64))
    with torch.no_grad():
        ref = m(x)
    to_packed_weight_only_(m)
    assert all(isinstance(l, PackedWeightOnlyLinear) for l in _fc_layers(m))
    with torch.no_grad():
        assert torch.equal(m(x), ref)

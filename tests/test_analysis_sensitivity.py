"""Per-layer sensitivity: each layer compressed alone, metric and output error per layer, a fragile layer first."""
import json
import math

import pytest
import torch
from torch import nn

from prunequant.analysis import sensitivity
from prunequant.errors import ConfigError
from prunequant.pruning import AnalyticThresholdConfig, MagnitudeConfig
from prunequant.quantization import PWLQConfig

torch.set_num_threads(1)


def _model_with_fragile_middle():
    """Layers 0 and 4: half the weights are tiny, so pruning 50% by magnitude costs almost nothing. Layer 2: every
    weight has about the same magnitude (0.3 ± 5%), so pruning half of them removes half of the signal."""
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for i in (0, 4):
            w = torch.randn(m[i].weight.shape, generator=g)
            tiny = torch.rand(w.shape, generator=g) < 0.5
            m[i].weight.copy_(torch.where(tiny, w * 1e-3, w))
        sign = torch.randint(0, 2, m[2].weight.shape, generator=g).float() * 2 - 1
        m[2].weight.copy_(sign * 0.3 * (1 + 0.05 * torch.rand(sign.shape, generator=g)))
    return m


def _data(model, n=256):
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return [(x[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]


def test_fragile_layer_ranks_first():
    model = _model_with_fragile_middle()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = sensitivity(model, MagnitudeConfig(sparsity=0.5), _data(model), cumulative=True)
    assert res.baseline_metric == 1.0 and res.metric_name == "accuracy"
    assert res.ranking()[0] == "2"
    by = {r.layer: r for r in res.layers}
    assert by["2"].metric_drop > 0.1 and by["0"].metric_drop < 0.05 and by["4"].metric_drop < 0.05
    assert by["2"].output_error > 3 * max(by["0"].output_error, by["4"].output_error)
    assert all(r.params == p for r, p in ((by["0"], 256), (by["2"], 1024), (by["4"], 128)))
    # greedy: least sensitive first, the fragile layer last
    assert [c["added"] for c in res.cumulative][-1] == "2" and len(res.cumulative) == 3
    assert res.cumulative[-1]["metric_drop"] >= res.cumulative[0]["metric_drop"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # model untouched
    assert sorted(res.layers_within(0.05)) == ["0", "4"]  # a 5-pt budget: compress all but the fragile layer
    assert res.layers_within(1.0) == [c["added"] for c in res.cumulative]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["layers"][0]["layer"] == "2" and d["config"]["type"] == "MagnitudeConfig"


def test_quantization_and_analytic_configs_and_errors():
    model = _model_with_fragile_middle()
    data = _data(model)
    q = sensitivity(model, PWLQConfig(wbits=2, abits=None, scheme="uniform"), data)
    assert sorted(q.ranking()) == ["0", "2", "4"]
    by = {r.layer: r for r in q.layers}
    assert all(math.isfinite(r.output_error) for r in q.layers) and by["0"].output_error > 0.05
    # ±c(1 ± 5%) weights suit 2 bits best; each run quantized one layer only (the others stayed fp32)
    assert q.ranking()[-1] == "2" and by["2"].output_error < min(by["0"].output_error, by["4"].output_error)
    a = sensitivity(model, AnalyticThresholdConfig(target_sparsity=0.5, min_density=0.0), data)
    assert a.ranking()[0] == "2"  # snapped to 50% in the layer alone: the same story as magnitude
    with pytest.raises(ConfigError, match="no method registered"):
        sensitivity(model, {"sparsity": 0.5}, data)
    with pytest.raises(ConfigError, match="targets"):
        sensitivity(model, MagnitudeConfig(sparsity=0.5), [torch.randn(4, 8)])

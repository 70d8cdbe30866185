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


# --- metric budget -> per-layer fallbacks (plan_from_budget) ---------------------------------------------------


def _model_with_fragile_outliers():
    """Layers 0 and 4: weights ±0.3 (1 ± 5%), easy for 3-bit uniform. Layer 2: every row has one weight of 8.0
    among N(0, 0.2) weights, so a 3-bit per-channel grid (step 8/3) rounds all the other weights to zero."""
    torch.manual_seed(0)  # the biases
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for i in (0, 4):
            sign = torch.randint(0, 2, m[i].weight.shape, generator=g).float() * 2 - 1
            m[i].weight.copy_(sign * 0.3 * (1 + 0.05 * torch.rand(sign.shape, generator=g)))
        w = torch.randn(32, 32, generator=g) * 0.2
        w[torch.arange(32), torch.randint(0, 32, (32,), generator=g)] = 8.0
        m[2].weight.copy_(w)
    return m


def _accuracy_after(model, config, data):
    """Independent check: the public verbs on a copy, then accuracy over all of ``data``."""
    import copy

    from prunequant import finalize_, quantize_

    m = copy.deepcopy(model)
    quantize_(m, config, calibration_data=torch.cat([x for x, _ in data]), fidelity=False)
    finalize_(m)
    with torch.no_grad():
        return float(torch.cat([(m(x).argmax(1) == y).float() for x, y in data]).mean())


def test_budget_keeps_the_fragile_layer_at_8bit_first_and_holds_on_the_data():
    from prunequant.analysis import plan_from_budget
    from prunequant.quantization import UniformConfig

    model = _model_with_fragile_outliers()
    data = _data(model)
    config = UniformConfig(wbits=3, abits=None)
    whole = _accuracy_after(model, config, data)
    assert whole < 0.95  # the whole model at 3 bits breaks a 5-point budget
    cfg, plan = plan_from_budget(model, config, data, max_drop=0.05)
    assert plan.sensitivity.ranking()[0] == "2"
    assert plan.steps[1]["layer"] == "2" and plan.steps[1]["fallback"] == "keep_8bit"
    assert plan.feasible and "budget met" in plan.message
    assert cfg.keep_8bit == ("2",) and cfg.skip == () and cfg.wbits == 3  # only the fragile layer moved
    assert plan.fallbacks == {"keep_8bit": ["2"], "skip": []} and plan.changes == {"keep_8bit": ["2"]}
    # the reported drop is what the returned config gives on the data, measured independently
    assert plan.baseline_metric == 1.0
    assert abs(_accuracy_after(model, cfg, data) - plan.metric) < 1e-6 and plan.metric_drop <= 0.05
    assert abs(plan.initial_metric_drop - (1.0 - whole)) < 1e-6
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["config"]["keep_8bit"] == ["2"] and d["feasible"] is True
    # binary search on the number of layers moved: the same plan here
    cfg_b, plan_b = plan_from_budget(model, config, data, max_drop=0.05, sensitivity_result=plan.sensitivity,
                                     search="bisect")
    assert cfg_b == cfg and plan_b.metric == plan.metric and plan_b.feasible
    with pytest.raises(ConfigError, match="search"):
        plan_from_budget(model, config, data, max_drop=0.05, search="random")
    # a ranking that puts a harmless layer first (ties, noise): the greedy moves it, the refine pass returns it
    import dataclasses

    by = {r.layer: r for r in plan.sensitivity.layers}
    misranked = dataclasses.replace(plan.sensitivity, layers=[by["4"], by["2"], by["0"]])
    cfg_n, plan_n = plan_from_budget(model, config, data, max_drop=0.05, sensitivity_result=misranked,
                                     refine=False)
    assert cfg_n.keep_8bit == ("4", "2") and plan_n.feasible
    cfg_r, plan_r = plan_from_budget(model, config, data, max_drop=0.05, sensitivity_result=misranked)
    assert cfg_r.keep_8bit == ("2",) and plan_r.feasible and plan_r.metric_drop <= 0.05
    assert [(s["layer"], s.get("refine", False)) for s in plan_r.steps[-2:]] == [("2", True), ("4", True)]
    # a budget the whole config already meets: nothing moves
    cfg2, plan2 = plan_from_budget(model, config, data, max_drop=0.5, sensitivity_result=plan.sensitivity)
    assert plan2.feasible and cfg2 == config and plan2.changes == {} and len(plan2.steps) == 1


def test_impossible_budget_is_reported_not_hidden():
    from prunequant.analysis import plan_from_budget
    from prunequant.quantization import UniformConfig

    model = _model_with_fragile_outliers()
    data = _data(model)
    config = UniformConfig(wbits=3, abits=None)
    res = sensitivity(model, config, data)
    # 8-bit fallback only, zero budget: even every layer but the last at 8 bits loses accuracy
    cfg, plan = plan_from_budget(model, config, data, max_drop=0.0, fallback="keep_8bit", sensitivity_result=res)
    assert not plan.feasible and "NOT met" in plan.message and plan.metric_drop > 0.0
    assert plan.fallbacks["keep_8bit"] == res.ranking()[:2]  # the last layer is never moved: nothing would be left
    assert abs(_accuracy_after(model, cfg, data) - plan.metric) < 1e-6  # the numbers are the returned config's
    # a negative budget asks for better than the uncompressed model
    _, plan = plan_from_budget(model, config, data, max_drop=-0.5, sensitivity_result=res)
    assert not plan.feasible and "better accuracy than the uncompressed model" in plan.message
    # pruning: the fallback is exclude; 95% sparsity on the one layer left still breaks a 5-point budget
    frag = _model_with_fragile_middle()
    pdata = _data(frag)
    cfg, plan = plan_from_budget(frag, MagnitudeConfig(sparsity=0.95), pdata, max_drop=0.05)
    assert not plan.feasible and plan.metric_drop > 0.05 and "exclude" in plan.message
    cfg, plan = plan_from_budget(frag, MagnitudeConfig(sparsity=0.5), pdata, max_drop=0.05)
    assert plan.feasible and cfg.exclude == ("2",) and plan.metric_drop <= 0.05
    with pytest.raises(ConfigError, match="fallback 'keep_8bit' is not a field of MagnitudeConfig"):
        plan_from_budget(frag, MagnitudeConfig(sparsity=0.5), pdata, max_drop=0.05, fallback="keep_8bit")
    with pytest.raises(ConfigError, match="max_drop"):
        plan_from_budget(frag, MagnitudeConfig(sparsity=0.5), pdata, max_drop=float("nan"))


def test_calibration_inputs_are_separate_from_the_measured_data():
    from prunequant.analysis import compressed_copy
    from prunequant.quantization import UniformConfig

    model = _model_with_fragile_outliers()
    data = _data(model)
    cfg = UniformConfig(wbits=8, abits=4, calibration="minmax")
    tiny = torch.randn(16, 8, generator=torch.Generator().manual_seed(5)) * 1e-3  # ranges fitted to ~zero inputs
    a = sensitivity(model, cfg, data)
    b = sensitivity(model, cfg, data, calibration=tiny)
    assert max(r.output_error for r in b.layers) > 2 * max(r.output_error for r in a.layers)
    c = sensitivity(model, cfg, data, calibration=[(tiny[:8], torch.zeros(8)), (tiny[8:], torch.zeros(8))])
    assert [r.output_error for r in c.layers] == pytest.approx([r.output_error for r in b.layers])  # (x, y) batches
    with pytest.raises(ConfigError, match="calibration"):
        compressed_copy(model, cfg)

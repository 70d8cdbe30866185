"""Magnitude baselines: global and uniform masks, MAC-tuned rate, the handler, and AGP gradual pruning."""
import itertools

import pytest
import torch
from torch import nn

from conftest import make_cnn
from prunequant import prune_
from prunequant.errors import ConfigError, LayerError
from prunequant.models import MobileNetSmall
from prunequant.pruning.base import FixedMask, get_mask, layer_sparsity
from prunequant.pruning.magnitude import (
    AGPPlugin,
    MagnitudeConfig,
    agp_sparsity,
    apply_magnitude_masks_,
    effective_mac_reduction,
    magnitude_masks,
    sparsity_for_mac_reduction,
)
from prunequant.training import TrainConfig, Trainer

torch.set_num_threads(1)
X = torch.zeros(1, 1, 8, 8)


def _cnn(seed=0):
    return make_cnn(seed)


def test_uniform_prunes_same_fraction_in_every_layer():
    model = _cnn()
    sp = apply_magnitude_masks_(model, 0.4, "uniform")
    assert set(sp) == {"features.0.weight", "features.3.weight", "features.6.weight", "classifier.weight"}
    for v in sp.values():
        assert v == pytest.approx(0.4, abs=0.004)
    for _name, module in (("features.0", model.features[0]), ("classifier", model.classifier)):
        assert isinstance(get_mask(module, "weight"), FixedMask)
        w = module.parametrizations.weight.original.detach().abs()
        keep = get_mask(module, "weight").mask
        assert w[~keep].max() <= w[keep].min()  # the smallest magnitudes go


def test_global_uses_one_threshold():
    model = _cnn()
    masks = magnitude_masks(model, 0.6, "global")
    mods = dict(model.named_modules())
    pruned_max = max(mods[k.rsplit(".", 1)[0]].weight.detach().abs()[~m].max() for k, m in masks.items()
                     if (~m).any())
    kept_min = min(mods[k.rsplit(".", 1)[0]].weight.detach().abs()[m].min() for k, m in masks.items())
    assert pruned_max <= kept_min
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.6 * total)
    per_layer = {k: 1 - m.float().mean().item() for k, m in masks.items()}
    assert max(per_layer.values()) - min(per_layer.values()) > 0.1  # global is not uniform


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_repruning_keeps_earlier_zeros(scope):
    model = _cnn()
    apply_magnitude_masks_(model, 0.3, scope)
    before = {k: get_mask(m, "weight").mask.clone() for k, m in model.named_modules() if get_mask(m, "weight")}
    apply_magnitude_masks_(model, 0.6, scope)
    for k, m in model.named_modules():
        if k in before:
            now = get_mask(m, "weight").mask
            assert not (now & ~before[k]).any()  # nothing revived


def test_nan_weight_is_named():
    model = _cnn()
    with torch.no_grad():
        model.features[3].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(LayerError, match="features.3.weight"):
        apply_magnitude_masks_(model, 0.5)
    with pytest.raises(ConfigError):
        magnitude_masks(_cnn(), 1.5)
    with pytest.raises(ConfigError):
        magnitude_masks(_cnn(), 0.5, "per-channel")


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_rate_tuned_to_mac_reduction_matches_report(scope):
    model = _cnn()
    s, red = sparsity_for_mac_reduction(model, 0.5, X, scope)
    assert get_mask(model.features[0], "weight") is None  # model untouched by the search
    apply_magnitude_masks_(model, s, scope)
    assert effective_mac_reduction(model, X) == pytest.approx(red)
    assert 0.5 <= red <= 0.505


def test_magnitude_handler_via_prune_():
    model = MobileNetSmall()
    out = prune_(model, MagnitudeConfig(mac_reduction=0.3, scope="uniform", finalize=True), example_input=X)
    assert out.mac_reduction == pytest.approx(0.3, abs=0.005)
    assert effective_mac_reduction(model, X) == pytest.approx(out.mac_reduction)
    assert get_mask(model.classifier, "weight") is None  # finalized: exact zeros, no parametrization
    assert (model.classifier.weight == 0).any()
    with pytest.raises(ConfigError):
        MagnitudeConfig(sparsity=0.5, mac_reduction=0.5)
    with pytest.raises(ConfigError, match="example_input"):
        prune_(_cnn(), MagnitudeConfig(mac_reduction=0.5))


def test_agp_schedule_shape():
    vals = [agp_sparsity(t, 0.8, 10, 110) for t in range(0, 121, 10)]
    assert vals[0] == 0.0 and vals[1] == 0.0 and vals[-1] == pytest.approx(0.8) and vals[-2] == pytest.approx(0.8)
    inc = [b - a for a, b in itertools.pairwise(vals[1:-1])]
    assert all(i >= 0 for i in inc) and inc[0] > inc[-1]  # fast first, slow at the end (cubic)


def test_agp_plugin_reaches_final_sparsity_while_training():
    from prunequant.data import digits_loaders

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    train, val, _ = digits_loaders(batch_size=128)
    steps = 3 * len(train)
    plugin = AGPPlugin(model, 0.7, end_step=2 * len(train), frequency=2, scope="uniform")
    hist = Trainer(model, TrainConfig(epochs=3, lr=3e-3, progress=False),
                   plugins=[plugin]).fit(train, val)
    assert [h["sparsity"] for h in hist] == sorted(h["sparsity"] for h in hist)
    sp = layer_sparsity(model)
    assert all(v == pytest.approx(0.7, abs=0.01) for v in sp.values())
    assert hist[-1]["val_accuracy"] > 0.5
    assert plugin.state_dict()["current"] == pytest.approx(0.7)
    assert steps > plugin.end_step


def test_full_sparsity_is_rejected_and_a_tiny_layer_keeps_one_weight():
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\)"):
        MagnitudeConfig(sparsity=1.0)
    with pytest.raises(ConfigError, match="mac_reduction"):
        MagnitudeConfig(mac_reduction=1.0)
    for scope in ("global", "uniform"):
        layer = nn.Linear(20, 10)  # 200 weights: round(0.999 * 200) would prune all of them
        prune_(layer, MagnitudeConfig(sparsity=0.999, scope=scope))
        assert int((layer.weight != 0).sum()) == 1

"""The leaf registry behind the facade: verbs, unknown keywords, declared finalize order, Fit shorthand, and the
plugins driven from a plain loop (hooks take (model, step), never a Trainer)."""
import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunequant import finalize_, prune_, prune_quantize_, quantize_, registry
from prunequant.errors import ConfigError
from prunequant.joint import JointConfig, MagnitudeQATConfig
from prunequant.pruning import AnalyticThresholdConfig, MacBudgetConfig, MagnitudeConfig
from prunequant.pruning.base import FixedMask, get_mask, global_sparsity
from prunequant.pruning.mac_budget import MacBudgetPlugin
from prunequant.pruning.magnitude import AGPPlugin, MagnitudeResult
from prunequant.quantization import PWLQConfig
from prunequant.training import Fit, TrainPlugin, param_groups

torch.set_num_threads(1)
SRC = Path(__file__).resolve().parents[1] / "src" / "prunequant"


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()), batch_size=16)


def test_registry_is_a_leaf_importing_only_errors():
    tree = ast.parse((SRC / "registry.py").read_text())
    own = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert [n.module for n in own] == ["errors"]


@pytest.mark.parametrize("verb, config", [
    (quantize_, AnalyticThresholdConfig()), (quantize_, MagnitudeConfig(sparsity=0.5)),
    (prune_, PWLQConfig(wbits=4)), (prune_, JointConfig()), (prune_quantize_, MacBudgetConfig()),
    (quantize_, MagnitudeQATConfig(sparsity=0.5)),
])
def test_a_config_given_to_the_wrong_verb_is_refused(verb, config):
    m = _mlp()
    with pytest.raises(ConfigError, match=r"is a '\w+' config: call \w+_\(model, config\)"):
        verb(m, config)
    assert not any(hasattr(mod, "parametrizations") for mod in m.modules())  # nothing was attached


def test_unknown_keyword_arguments_are_refused_with_a_hint():
    m = _mlp()
    with pytest.raises(ConfigError, match="'calibraton_data' \\(did you mean 'calibration_data'\\?\\)"):
        quantize_(m, PWLQConfig(wbits=4, abits=8), calibraton_data=torch.randn(4, 10))
    with pytest.raises(ConfigError, match="'trian'"):
        prune_(m, AnalyticThresholdConfig(), trian=_data())
    with pytest.raises(ConfigError, match="'train'"):  # PWLQ is post-training: no Fit keywords
        quantize_(m, PWLQConfig(wbits=4), train=_data())
    with pytest.raises(ConfigError, match="not both"):
        prune_(m, MagnitudeConfig(sparsity=0.5), fit=Fit(_data()), train=_data())
    with pytest.raises(ConfigError, match="without train"):
        prune_(m, MagnitudeConfig(sparsity=0.5), val=_data())
    assert not any(hasattr(mod, "parametrizations") for mod in m.modules())


def test_handlers_must_declare_their_keywords():
    class Cfg:
        pass

    with pytest.raises(ConfigError, match="\\*\\*kwargs"):
        registry.register_handler(Cfg, verb="prune")(lambda model, config, **kw: None)
    with pytest.raises(ConfigError, match="verb"):
        registry.register_handler(Cfg, verb="compress")


def test_finalizers_run_in_declared_order():
    prune_(_mlp(), MagnitudeConfig(sparsity=0.1))  # loads the method packages
    names = [f.__name__ for f in registry.finalizers(bake_quantization=True)]
    assert names.index("finalize_joint_layers_") < names.index("finalize_masks_") < names.index(
        "finalize_quantization_")
    assert "finalize_quantization_" not in [f.__name__ for f in registry.finalizers()]


def test_finalize_runs_a_newly_registered_finalizer_in_its_place():
    calls = []

    def first(model):
        calls.append("first")

    def last(model):
        calls.append("last" if get_mask(model[0], "weight") is None else "masks still there")

    registry.register_finalizer(first, order=-1)
    registry.register_finalizer(last, order=99)
    try:
        m = _mlp()
        prune_(m, MagnitudeConfig(sparsity=0.5))
        finalize_(m)
        assert calls == ["first", "last"]
    finally:
        registry._FINALIZERS.pop(first)
        registry._FINALIZERS.pop(last)


def test_fit_shorthand_and_fit_object_give_the_same_result():
    a, b = _mlp(), _mlp()
    ra = prune_(a, MagnitudeConfig(sparsity=0.5, finetune_epochs=1), train=_data(), loss_fn=F.cross_entropy)
    rb = prune_(b, MagnitudeConfig(sparsity=0.5, finetune_epochs=1), fit=Fit(_data(), loss_fn=F.cross_entropy))
    assert rb.history[0]["train_loss"] == ra.history[0]["train_loss"]
    assert isinstance(ra, MagnitudeResult) and len(ra.history) == 1 and ra.sparsity == pytest.approx(0.5, abs=0.01)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_agp_and_mac_budget_plugins_run_in_a_plain_loop():
    m = _mlp()
    agp = AGPPlugin(m, 0.6, end_step=8, frequency=2, scope="uniform")
    x1 = torch.randn(1, 10)
    mac = MacBudgetPlugin(m, MacBudgetConfig(mac_reduction=0.15, rounds=2, max_extra_rounds=0, include=["2"]),
                          x1, every=4)
    assert mac.pruner.round == 1  # first round applied on construction
    plugins: list[TrainPlugin] = [agp, mac]
    opt = torch.optim.SGD(param_groups(m, plugins, lr=0.05))
    step = 0
    for _ in range(3):
        for x, y in _data():
            step += 1
            loss = F.cross_entropy(m(x), y) + sum(p.loss(m, step) for p in plugins)
            opt.zero_grad()
            loss.backward()
            opt.step()
            for p in plugins:
                p.on_step_end(m, step)
    assert mac.pruner.round == 2 and mac.result.reduction >= 0.15 - 0.005
    assert isinstance(get_mask(m[0], "weight"), FixedMask)
    assert global_sparsity(m, include=["0"]) == pytest.approx(0.6, abs=0.01)
    finalize_(m)
    assert get_mask(m[0], "weight") is None and get_mask(m[2], "weight") is None


def test_joint_baseline_returns_a_dataclass_and_needs_data():
    m = _mlp()
    with pytest.raises(ConfigError, match="trains"):
        prune_quantize_(m, MagnitudeQATConfig(sparsity=0.5, epochs=1))
    res = prune_quantize_(m, MagnitudeQATConfig(sparsity=0.5, epochs=1, abits=None), train=_data(), val=_data())
    assert res.sparsity == 0.5 and len(res.history) == 1 and 0.0 <= res.val_metric <= 1.0

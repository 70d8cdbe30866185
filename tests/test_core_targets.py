"""core: target selection, weight keys, input checks, the parametrization-chain accessor."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.core.chain import WeightChain, has_chain, weight_chains
from prunequant.core.checks import check_bits, check_weight
from prunequant.core.masks import FixedMask
from prunequant.core.targets import (
    SUPPORTED_TYPES,
    Selector,
    compressible_weights,
    set_submodule,
    weight_key,
)
from prunequant.errors import ConfigError, LayerError, UnsupportedModuleError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))
        self.rnn = nn.LSTM(4, 8, num_layers=2)
        self.attn = nn.MultiheadAttention(8, 2)
        self.head = nn.Linear(8, 3)


def test_weight_key():
    assert weight_key("features.0", "weight") == "features.0.weight"
    assert weight_key("", "weight") == "weight"


def test_compressible_weights_all_and_keys():
    keys = [r.key for r in compressible_weights(Net())]
    assert keys == ["features.0.weight", "features.3.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                    "rnn.weight_ih_l1", "rnn.weight_hh_l1", "attn.in_proj_weight", "attn.out_proj.weight",
                    "head.weight"]
    r = compressible_weights(Net())[0]
    name, module, pname, key = r
    assert (name, pname, key) == ("features.0", "weight", "features.0.weight") and isinstance(module, nn.Conv2d)


def test_selector_include_exclude_types_and_skip():
    m = Net()
    keys = lambda sel: [r.key for r in compressible_weights(m, sel)]  # noqa: E731
    assert keys(Selector.of(include=["features.*"])) == ["features.0.weight", "features.3.weight"]
    assert keys(Selector.of(include=[nn.Linear])) == ["attn.out_proj.weight", "head.weight"]
    assert keys(Selector.of(exclude=["rnn", "attn*"], skip=["head"])) == ["features.0.weight", "features.3.weight"]
    assert keys(Selector.of(types=[nn.LSTM])) == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1",
                                                   "rnn.weight_hh_l1"]
    sel = Selector.of(include=["features.*"], exclude=[nn.Conv1d])
    assert sel.matches("features.0", nn.Linear(2, 2)) and not sel.matches("head", nn.Linear(2, 2))


def test_selector_errors_name_the_module():
    with pytest.raises(ConfigError, match="nope"):
        compressible_weights(Net(), Selector.of(include=["nope"]))
    with pytest.raises(UnsupportedModuleError, match="features.1"):
        compressible_weights(Net(), Selector.of(include=["features.1"]))
    with pytest.raises(UnsupportedModuleError, match="BatchNorm2d"):
        compressible_weights(Net(), Selector.of(types=[nn.BatchNorm2d]))
    with pytest.raises(ConfigError, match="include"):
        Selector.of(include="features.0")
    assert nn.Linear in SUPPORTED_TYPES


def test_set_submodule():
    m = Net()
    set_submodule(m, "features.1", nn.Identity())
    assert isinstance(m.features[1], nn.Identity)
    with pytest.raises(ConfigError, match="features.9"):
        set_submodule(m, "features.9", nn.Identity())
    with pytest.raises(ConfigError):
        set_submodule(m, "", nn.Identity())


def test_check_weight_and_bits():
    check_weight(torch.ones(3), "fc.weight")
    with pytest.raises(LayerError, match=r"layer 'fc.weight'.*2 NaN/Inf.*1 NaN, 1 Inf"):
        check_weight(torch.tensor([1.0, float("nan"), float("inf")]), "fc.weight")
    with pytest.raises(LayerError, match="layer 'fc'.*empty"):
        check_weight(torch.ones(0), "layer 'fc'")
    with pytest.raises(LayerError, match="floating-point"):
        check_weight(torch.ones(2, dtype=torch.int64), "fc.weight")
    with pytest.raises(LayerError, match="torch.Tensor"):
        check_weight([1.0], "fc.weight")
    assert check_bits(4) == 4
    for bad in (1, 17, 4.0, True, "4"):
        with pytest.raises(ConfigError, match="weight bits"):
            check_bits(bad, "weight bits")


class _Scale(nn.Module):
    def forward(self, w):
        return 2 * w


def test_weight_chain_order_inputs_and_effective():
    lin = nn.Linear(3, 2)
    assert not has_chain(lin, "weight")
    c = WeightChain(lin, "weight", "fc")
    assert c.original is lin.weight and c.masks == [] and c.quantizer is None
    with pytest.raises(LayerError, match="fc.weight.*no weight quantizer"):
        c.quant_input()
    keep = torch.tensor([[True, False, True], [False, True, True]])
    parametrize.register_parametrization(lin, "weight", _Scale())
    parametrize.register_parametrization(lin, "weight", FixedMask(keep))
    c = WeightChain(lin, "weight", "fc")
    assert has_chain(lin, "weight") and c.key == "fc.weight"
    assert c.original is lin.parametrizations.weight.original
    assert c.mask is c.parametrizations[1] and c.index(c.mask) == 1
    assert torch.equal(c.input_of(c.mask), 2 * c.original)
    assert torch.equal(c.effective(), 2 * c.original * keep)
    model = nn.Sequential(lin, nn.Linear(2, 2))
    assert [ch.key for ch in weight_chains(model)] == ["0.weight"]

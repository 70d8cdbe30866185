"""Shared pruning machinery: prunable layers, FixedMask, apply/finalize, sparsity and error handling."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import ConfigError, LayerError, ShapeError, UnsupportedModuleError
from prunequant.pruning.base import (
    FixedMask,
    MaskParametrization,
    apply_mask_,
    finalize_masks_,
    get_mask,
    global_sparsity,
    kept_mask,
    layer_sparsity,
    mask_parametrizations,
    prunable_modules,
)

torch.set_num_threads(1)


class Zoo(nn.Module):
    """One of every supported layer plus unsupported ones (BN, Embedding)."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3, padding=1)
        self.conv2d = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.emb = nn.Embedding(5, 4)
        self.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        self.gru = nn.GRU(6, 6, batch_first=True, bidirectional=True)
        self.attn = nn.MultiheadAttention(12, 3, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):  # x: (B, 2, T)
        y = self.bn(self.conv1d(x))
        y = self.conv2d(y.unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (B, T, 4)
        y, _ = self.lstm(y)
        y, _ = self.gru(y)
        y, _ = self.attn(y, y, y)
        return self.head(y.mean(1))


def _zoo(seed=0):
    torch.manual_seed(seed)
    return Zoo().eval()


def _random_masks_(model, p=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    for name, module, pname in prunable_modules(model):
        w = getattr(module, pname)
        apply_mask_(module, pname, torch.rand(w.shape, generator=g) > p, layer_name=name)


def test_prunable_modules_covers_every_supported_layer():
    got = {(n, p) for n, _, p in prunable_modules(_zoo())}
    expected = {("conv1d", "weight"), ("conv2d", "weight"), ("head", "weight"), ("attn", "in_proj_weight"),
                ("attn.out_proj", "weight")}
    expected |= {("lstm", f"weight_{k}_l{i}") for k in ("ih", "hh") for i in (0, 1)}
    expected |= {("gru", f"weight_{k}_l0{s}") for k in ("ih", "hh") for s in ("", "_reverse")}
    assert got == expected


def test_include_exclude_patterns_and_types():
    m = _zoo()
    assert {n for n, _, _ in prunable_modules(m, include=["conv*"])} == {"conv1d", "conv2d"}
    assert {n for n, _, _ in prunable_modules(m, include=[nn.Linear])} == {"head", "attn.out_proj"}
    names = {n for n, _, _ in prunable_modules(m, exclude=["attn*", nn.LSTM, nn.GRU])}
    assert names == {"conv1d", "conv2d", "head"}
    assert {n for n, _, _ in prunable_modules(m, types=[nn.Conv2d])} == {"conv2d"}


def test_unsupported_or_unknown_module_in_include_is_named():
    m = _zoo()
    with pytest.raises(UnsupportedModuleError, match="'bn'.*BatchNorm1d"):
        prunable_modules(m, include=["bn"])
    with pytest.raises(UnsupportedModuleError, match="Embedding"):
        prunable_modules(m, types=[nn.Embedding])
    with pytest.raises(ConfigError, match="no module named 'nope'"):
        prunable_modules(m, include=["nope"])


def test_fixed_mask_forward_and_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    w0 = lin.weight.detach().clone()
    keep = torch.rand(4, 5) > 0.5
    par = apply_mask_(lin, "weight", keep, layer_name="lin")
    assert isinstance(par, FixedMask) and isinstance(par, MaskParametrization)
    assert torch.equal(lin.weight, w0 * keep)
    lin(torch.randn(3, 5)).sum().backward()
    grad = lin.parametrizations.weight.original.grad
    assert torch.all(grad[~keep] == 0) and torch.any(grad[keep] != 0)
    # A second tensor updates the same FixedMask in place (gradual schedules).
    keep2 = keep & (torch.rand(4, 5) > 0.5)
    assert apply_mask_(lin, "weight", keep2) is par
    assert torch.equal(par.mask, keep2) and torch.equal(lin.weight, w0 * keep2)


def test_apply_mask_validates_weight_and_shape():
    lin = nn.Linear(3, 2)
    with pytest.raises(ShapeError, match="lin.weight"):
        apply_mask_(lin, "weight", torch.ones(3, 2, dtype=torch.bool), layer_name="lin")
    with torch.no_grad():
        lin.weight[0, 1] = float("nan")
    with pytest.raises(LayerError, match="'lin.weight'.*NaN"):
        apply_mask_(lin, "weight", torch.ones(2, 3, dtype=torch.bool), layer_name="lin")
    with torch.no_grad():
        lin.weight[0, 1] = float("inf")
    with pytest.raises(LayerError, match="lin"):
        apply_mask_(lin, "weight", torch.ones(2, 3, dtype=torch.bool), layer_name="lin")


def test_sparsity_counts_masks_and_exact_zeros():
    lin = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.weight[0, :5] = 0.0  # 5 exact zeros, unmasked
    keep = torch.ones(10, 10, dtype=torch.bool)
    keep[1] = False  # 10 masked out
    apply_mask_(lin, "weight", keep)
    assert int(kept_mask(lin).sum()) == 85
    assert global_sparsity(lin) == pytest.approx(0.15)
    assert layer_sparsity(lin) == {"weight": pytest.approx(0.15)}
    with pytest.raises(LayerError, match="no prunable weights"):
        global_sparsity(nn.Sequential(nn.ReLU()))


def test_finalize_gives_exact_zeros_same_outputs_on_every_layer_type():
    m = _zoo()
    _random_masks_(m)
    x = torch.randn(2, 2, 7)
    y_masked = m(x)
    s = global_sparsity(m)
    params_before = {(n, p): getattr(mod.parametrizations, p).original for n, mod, p in prunable_modules(m)}
    finalize_masks_(m)
    assert not mask_parametrizations(m)
    assert not any(parametrize.is_parametrized(mod) for mod in m.modules())
    torch.testing.assert_close(m(x), y_masked, rtol=0, atol=0)
    assert global_sparsity(m) == pytest.approx(s)
    for name, mod, p in prunable_modules(m):
        assert getattr(mod, p) is params_before[name, p]  # the original Parameter object survives


class _Scale(nn.Module):
    def forward(self, w):
        return 2 * w


def test_finalize_keeps_parametrizations_stacked_after_the_mask():
    torch.manual_seed(0)
    lin = nn.Linear(4, 4)
    keep = torch.rand(4, 4) > 0.5
    apply_mask_(lin, "weight", keep)
    parametrize.register_parametrization(lin, "weight", _Scale())
    expected = lin.weight.detach().clone()
    finalize_masks_(lin)
    assert get_mask(lin, "weight") is None
    assert len(lin.parametrizations.weight) == 1
    torch.testing.assert_close(lin.weight, expected)
    assert torch.all(lin.parametrizations.weight.original[~keep] == 0)


def test_finalize_refuses_a_mask_that_is_not_first():
    lin = nn.Linear(4, 4)
    parametrize.register_parametrization(lin, "weight", _Scale())
    apply_mask_(lin, "weight", torch.ones(4, 4, dtype=torch.bool), layer_name="lin")
    with pytest.raises(LayerError, match="must come first"):
        finalize_masks_(lin)


def test_masked_state_dict_round_trip():
    a, b = _zoo(0), _zoo(1)
    _random_masks_(a, seed=3)
    _random_masks_(b, seed=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 2, 5)
    torch.testing.assert_close(b(x), a(x))

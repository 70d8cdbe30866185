"""BN folding: outputs equal before and after on the digits CNN, ResNet-style and MobileNet-style nets."""
import pytest
import torch
from torch import nn

from prunequant.errors import LayerError
from prunequant.models import MLP, DigitsCNN, MobileNetSmall, ResNetSmall
from prunequant.pruning.base import apply_mask_
from prunequant.quantization import fold_batchnorm

torch.set_num_threads(1)


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.3)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=g))
                m.bias.data.copy_(torch.randn(n, generator=g))
    return model.eval()


@pytest.mark.parametrize("cls,n_bn", [(DigitsCNN, 3), (ResNetSmall, 9), (MobileNetSmall, 7)])
@pytest.mark.parametrize("remove_bn", [False, True])
def test_fold_keeps_outputs(cls, n_bn, remove_bn):
    torch.manual_seed(0)
    model = _randomize_bn(cls())
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
        keys = set(model.state_dict())
        pairs = fold_batchnorm(model, remove_bn=remove_bn)
        after = model(x)
    assert len(pairs) == n_bn
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if remove_bn:
        assert not bns
    else:  # reference-code style: state-dict keys unchanged, every BN is identity + shift
        assert set(model.state_dict()) == keys
        for bn in bns:
            assert bool((bn.running_mean == 0).all()) and bool((bn.weight == 1).all())
            assert bool((bn.running_var + bn.eps == 1.0).all())


def test_depthwise_fold_scales_each_channel():
    conv, bn = nn.Conv2d(4, 4, 3, groups=4, bias=True), nn.BatchNorm2d(4)
    model = _randomize_bn(nn.Sequential(conv, bn))
    w0 = conv.weight.detach().clone()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        before = model(x)
        fold_batchnorm(model, remove_bn=True)
        assert torch.allclose(before, model(x), atol=1e-5)
    scale = (conv.weight.detach() / w0).flatten(1)
    assert torch.allclose(scale, scale[:, :1].expand_as(scale), rtol=1e-5)


def test_linear_bn1d_and_untraceable_fallback():
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU())

        def forward(self, x):
            return self.body(x) if float(x.sum()) > -1e9 else x

    model = _randomize_bn(Branchy())
    x = torch.randn(7, 6)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == [("body.0", "body.1")]
        assert torch.allclose(before, model(x), atol=1e-5)


def test_bn_after_addition_is_left_alone():
    class AddBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.bn = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.a(x) + self.b(x))

    model = _randomize_bn(AddBN())
    mean = model.bn.running_mean.clone()
    assert fold_batchnorm(model) == []
    assert torch.equal(model.bn.running_mean, mean)
    mlp = MLP()
    assert fold_batchnorm(mlp) == []


def test_masked_conv_keeps_zeros():
    model = _randomize_bn(DigitsCNN())
    conv = model.features[0]
    mask = torch.rand_like(conv.weight) > 0.5
    apply_mask_(conv, "weight", mask)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
        fold_batchnorm(model)
        assert torch.allclose(before, model(x), atol=1e-5)
    assert bool((conv.weight[~mask] == 0).all())


def test_bn_without_running_stats_is_an_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(LayerError, match="running statistics"):
        fold_batchnorm(model)

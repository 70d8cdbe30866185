"""The torchao-style entry points: dispatch on config type, clear errors, generic finalize_."""
import pytest
import torch
from torch.nn.utils import parametrize

from prunequant import finalize_, prune_, quantize_
from prunequant.errors import ConfigError, UnsupportedModuleError
from prunequant.models import build_model
from prunequant.pruning import MagnitudeConfig
from prunequant.quantization import PWLQConfig


def test_unknown_config_and_non_module():
    with pytest.raises(ConfigError, match="no method registered for config dict"):
        prune_(build_model("mlp"), {"sparsity": 0.5})
    with pytest.raises(UnsupportedModuleError):
        quantize_("model", PWLQConfig(wbits=4))


def test_finalize_prune_then_quantize_gives_exact_zeros_and_same_outputs():
    torch.manual_seed(0)
    m = build_model("mlp").eval()
    x = torch.rand(8, 1, 8, 8)
    prune_(m, MagnitudeConfig(sparsity=0.8))
    zeros = m.net[1].weight == 0
    quantize_(m, PWLQConfig(wbits=4, abits=None))
    y = m(x)
    finalize_(m)  # masks baked, quantizers kept for export
    assert not any(parametrize.is_parametrized(mod, "weight") and any(
        "Mask" in type(p).__name__ for p in mod.parametrizations["weight"]) for mod in m.modules())
    torch.testing.assert_close(m(x), y, rtol=0, atol=1e-6)
    finalize_(m, bake_quantization=True)
    assert not any(parametrize.is_parametrized(mod) for mod in m.modules())
    torch.testing.assert_close(m(x), y, rtol=0, atol=1e-6)
    first = m.net[1].weight
    assert torch.equal(first == 0, zeros) and zeros.float().mean() > 0.3  # pruned zeros survive quantization
    assert m.net[1].prunequant_wbits == 4

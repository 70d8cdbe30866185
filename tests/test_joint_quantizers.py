"""Soft mixed-precision quantizers: τ → 0 limit, hardening, gradients, 0-bit candidate, config checks."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import ConfigError
from prunequant.joint import BitMixture, ChannelBitsWeightQuant, JointConfig, SoftMixActQuant, SoftMixWeightQuant
from prunequant.pruning.analytic import AnalyticThreshold
from prunequant.quantization.base import ActFakeQuant, attach_input_quant
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

torch.set_num_threads(1)


def _weight(shape=(8, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def _set_logits(mix: BitMixture, values):
    with torch.no_grad():
        mix.logits.copy_(torch.as_tensor(values, dtype=torch.float32).reshape(mix.logits.shape))


@pytest.mark.parametrize("dim", [None, 0])
@pytest.mark.parametrize("scheme", ["uniform", "pwlq"])
def test_small_tau_equals_hard_quantizer_of_argmax(dim, scheme):
    w = _weight()
    bits = (2, 3, 4, 8)
    q = SoftMixWeightQuant(bits, (scheme,) * 4, dim=dim, scale_channels=w.shape[0] if dim == 0 else 1)
    q.refresh_breakpoints_(w)
    _set_logits(q.mixture, [0.1, 0.7, 0.3, 0.2])  # argmax: 3 bits
    q.mixture.tau.fill_(1e-4)
    soft = q(w)
    if scheme == "uniform":
        ref = UniformWeightQuant.from_weight(w, 3, symmetric=True, dim=dim)(w)
    else:
        m, p = q.pwlq_params(w, 1)
        ref = PWLQWeightQuant(3, p, m, dim=dim)(w)
    assert torch.equal(soft, ref)
    # a moderate temperature really mixes: the output differs from every single candidate
    q.mixture.tau.fill_(1.0)
    mixed = q(w)
    assert all(not torch.allclose(mixed, q.candidate(w, i)) for i in range(4))


def test_hardened_mixture_is_the_chosen_quantizer_and_weighted_sum_is_exact():
    w = _weight()
    q = SoftMixWeightQuant((2, 4, 8), ("uniform",) * 3)
    q.mixture.tau.fill_(0.7)
    p = q.mixture.probs()
    expect = sum(p[i] * q.candidate(w, i) for i in range(3))
    assert torch.allclose(q(w), expect)
    q.mixture.harden_(torch.tensor(1))
    assert q.mixture.hard and q.bits == 4 and not q.mixture.logits.requires_grad
    assert torch.equal(q(w), UniformWeightQuant.from_weight(w, 4, dim=None)(w))
    assert float(q.mixture.expected_bits()) == 4.0


def test_expected_bits_and_probabilities():
    mix = BitMixture((2, 4, 8), init="uniform")
    assert torch.allclose(mix.probs(), torch.full((3,), 1 / 3))
    assert abs(float(mix.expected_bits().detach()) - 14 / 3) < 1e-6
    lin = BitMixture((2, 4, 8), channels=5)
    assert lin.logits.shape == (3, 5) and int(lin.argmax()[0]) == 2  # linear init prefers 8 bits
    assert lin.expected_bits().shape == (5,)
    assert "8:" in lin.describe()


def test_gradients_reach_logits_thresholds_and_weights():
    torch.manual_seed(0)
    lin = nn.Linear(12, 6)
    w = lin.weight.detach()
    std = float(w.std())
    parametrize.register_parametrization(lin, "weight", AnalyticThreshold(torch.tensor(0.3 * std),
                                                                          torch.tensor(0.5 * std)))
    wq = SoftMixWeightQuant((0, 2, 4, 8), ("uniform",) * 4)
    parametrize.register_parametrization(lin, "weight", wq)
    aq = SoftMixActQuant((2, 4, 8))
    attach_input_quant(lin, aq)
    x = torch.randn(32, 12)
    lin.train()
    y = lin(x)
    loss = (y ** 2).mean() + wq.mixture.expected_bits() * 0.0
    loss.backward()
    mask = lin.parametrizations.weight[0]
    grads = {"weight": lin.parametrizations.weight.original.grad, "w_logits": wq.mixture.logits.grad,
             "a_logits": aq.mixture.logits.grad, "log_alpha": mask.log_alpha.grad, "log_beta": mask.log_beta.grad}
    for name, g in grads.items():
        assert g is not None, name
        assert torch.isfinite(g).all(), name
        assert float(g.abs().sum()) > 0, name


def test_zero_bit_candidate_removes_layer_or_channels():
    w = _weight()
    q = SoftMixWeightQuant((0, 4), ("uniform",) * 2)
    q.mixture.harden_(torch.tensor(0))
    assert torch.count_nonzero(q(w)) == 0 and q.bits == 2  # stored at the smallest width
    qc = SoftMixWeightQuant((0, 2, 4), ("uniform",) * 3, dim=0, mix_channels=8, scale_channels=8)
    chosen = torch.tensor([0, 1, 2, 2, 0, 1, 1, 2])
    qc.mixture.harden_(chosen)
    out = qc(w)
    assert torch.count_nonzero(out[chosen == 0]) == 0
    ref = ChannelBitsWeightQuant.from_weight(w, torch.tensor([0, 2, 4, 4, 0, 2, 2, 4]), dim=0)
    assert torch.equal(out, ref(w))
    assert torch.equal(ref.decode(ref.codes(w)), ref(w))
    assert ref.bits == 4


def test_act_quantizer_matches_act_fake_quant_and_tracks_range():
    aq = SoftMixActQuant((2, 4, 8), momentum=0.5)
    x = torch.rand(64, 10) * 3.0
    aq.train()
    aq(x)
    assert float(aq.lo) >= 0 and abs(float(aq.hi) - float(x.max())) < 1e-6 and not aq.signed
    aq(x * 2)
    assert abs(float(aq.hi) - 1.5 * float(x.max())) < 1e-5  # EMA with momentum 0.5
    aq.mixture.harden_(torch.tensor(1))
    aq.eval()
    ref = ActFakeQuant(4, signed=False, scale=aq.scale(4))
    assert torch.equal(aq(x), ref(x))
    signed = SoftMixActQuant((4,))
    signed.train()
    signed(torch.randn(100))
    assert signed.signed


def test_uncalibrated_act_quantizer_raises():
    aq = SoftMixActQuant((4, 8)).eval()
    with pytest.raises(ConfigError, match="calibration"):
        aq(torch.ones(3))


@pytest.mark.parametrize("kw, match", [
    (dict(weight_bits=(1, 4)), "weight_bits"),
    (dict(weight_bits=(4, 4)), "duplicate"),
    (dict(act_bits=(0, 4)), "act_bits"),
    (dict(weight_bits=(0,)), "only candidate"),
    (dict(weight_scheme="lloyd"), "weight_scheme"),
    (dict(weight_scheme=("uniform",)), "entries"),
    (dict(target_sparsity=1.5), "target_sparsity"),
    (dict(target_wbits=1.0), "below the smallest"),
    (dict(target_size_bytes=-3), "target_size_bytes"),
    (dict(tau_start=0.1, tau_end=1.0), "tau_end"),
    (dict(loss_weights={"speed": 1.0}), "unknown term"),
    (dict(mix_granularity="channel", weight_scheme="pwlq"), "per-channel"),
])
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        cfg = JointConfig(**kw)
        SoftMixWeightQuant(cfg.weight_bits, cfg.schemes, mix_channels=4 if cfg.mix_granularity == "channel" else None)

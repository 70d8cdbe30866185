"""Group-wise weight-only quantization (uniform affine and PWLQ): exactness, grouping, storage accounting, spec."""
import pytest
import torch
from torch.nn.utils import parametrize

from prunequant.core.quantizer import quantizer_from_spec
from prunequant.errors import ConfigError, LayerError, ShapeError
from prunequant.quantization.groupwise import (
    GroupPWLQWeightQuant,
    GroupUniformWeightQuant,
    group_affine_qparams,
    group_pwlq_params,
    to_groups,
)
from prunequant.quantization.pwlq import PWLQWeightQuant

torch.set_num_threads(1)


def _weight(out=12, inp=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    w[1, 3] = 0.9          # an outlier in the first group of row 1
    w[2, 64:96] = 0.0      # an all-zero group
    return w


@pytest.mark.parametrize("g", [32, 64, 128])
@pytest.mark.parametrize("bits", [3, 4])
def test_uniform_group_decode_is_exact(g, bits):
    w = _weight()
    q = GroupUniformWeightQuant.from_weight(w, bits, g)
    c = q.codes(w)["codes"]
    assert c.dtype == torch.uint8 and int(c.max()) <= 2 ** bits - 1
    assert torch.equal(q.decode(q.codes(w)), q(w))
    # the affine grid holds 0 exactly, so the zero group decodes to zeros
    assert torch.equal(q(w)[2, 64:96], torch.zeros(32))
    # every group's error is at most half its own step
    err = to_groups(q(w) - w, g).abs().amax(1)
    assert bool((err <= q.scale.float() / 2 + 1e-7).all())


@pytest.mark.parametrize("g", [32, 64, 128])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_pwlq_group_decode_is_exact(g, bits):
    w = _weight()
    q = GroupPWLQWeightQuant.from_weight(w, bits, g)
    c = q.codes(w)
    assert set(c) == {"codes", "region"}
    assert int(c["codes"].min()) >= -(2 ** (bits - 1)) and int(c["codes"].max()) <= 2 ** (bits - 1) - 1
    assert torch.equal(q.decode(c), q(w))
    assert torch.equal(q(w)[2, 64:96], torch.zeros(32))
    # parameters are fp16 and ordered 0 < p < m on every non-zero group
    assert q.breakpoints.dtype == torch.float16 and q.max_abs.dtype == torch.float16
    nz = q.max_abs > 0
    assert bool((q.breakpoints[nz, 0] > 0).all() and (q.breakpoints[nz, 0] < q.max_abs[nz]).all())


def test_groups_are_independent_and_follow_the_input_dimension():
    w = _weight()
    q = GroupUniformWeightQuant.from_weight(w, 4, 32)
    base = q(w)
    w2 = w.clone()
    w2[1, 3] = 5.0  # a bigger outlier in group (row 1, cols 0..31) changes only that group
    q2 = GroupUniformWeightQuant.from_weight(w2, 4, 32)
    diff = (q2(w2) != base)
    diff[1, 3] = False
    assert diff[1, :32].any() and not diff[:, 32:].any() and not diff[0].any() and not diff[2:].any()
    # per-group ranges beat a per-row range on a row with an outlier
    row = GroupUniformWeightQuant.from_weight(w, 4, 128)
    assert float(((q(w) - w)[1] ** 2).sum()) < float(((row(w) - w)[1] ** 2).sum())


def test_pwlq_group_equals_per_channel_pwlq_on_the_group_view():
    """Group-wise PWLQ is per-channel PWLQ of the (N*G, g) view (same breakpoints -> same values)."""
    w = _weight()
    q = GroupPWLQWeightQuant.from_weight(w, 4, 64)
    ref = PWLQWeightQuant(4, q.breakpoints.float(), q.max_abs.float())
    assert torch.equal(q(w), ref(w.reshape(-1, 64)).reshape(w.shape))


def test_bits_per_weight_counts_codes_and_every_parameter():
    w = _weight(out=8, inp=128)
    for g, expect in ((32, 4 + 24 / 32), (64, 4 + 24 / 64), (128, 4 + 24 / 128)):
        q = GroupUniformWeightQuant.from_weight(w, 4, g)
        assert q.bits_per_weight(w.numel()) == pytest.approx(expect)
        spec_bits = sum(t.numel() * t.element_size() * 8 for t in q.spec().tensors.values())
        assert spec_bits == (w.numel() // g) * 24
    for g, expect in ((32, 3 + 1 + 32 / 32), (128, 3 + 1 + 32 / 128)):
        q = GroupPWLQWeightQuant.from_weight(w, 3, g)
        assert q.code_bits() == {"codes": 3, "region": 1}
        assert q.bits_per_weight(w.numel()) == pytest.approx(expect)
    q2 = GroupPWLQWeightQuant.from_weight(w, 3, 64, n_breakpoints=2)
    assert q2.code_bits() == {"codes": 3, "region": 2}
    assert q2.bits_per_weight(w.numel()) == pytest.approx(3 + 2 + 48 / 64)


@pytest.mark.parametrize("cls,kw", [(GroupUniformWeightQuant, {}), (GroupPWLQWeightQuant, {"n_breakpoints": 2})])
def test_spec_round_trip_is_bit_identical(cls, kw):
    w = _weight()
    q = cls.from_weight(w, 4, 32, **kw)
    spec = q.spec()
    assert spec.attrs["group_size"] == 32
    r = quantizer_from_spec(spec)
    assert type(r) is cls and torch.equal(r(w), q(w)) and r.code_bits() == q.code_bits()


def test_parametrization_on_linear_and_conv_with_straight_through_gradient():
    lin = torch.nn.Linear(64, 4)
    parametrize.register_parametrization(lin, "weight", GroupPWLQWeightQuant.from_weight(lin.weight, 3, 32))
    lin(torch.randn(2, 64)).sum().backward()
    assert lin.parametrizations.weight.original.grad is not None
    conv = torch.nn.Conv2d(8, 4, 2)  # input dimension 8*2*2 = 32, flattened
    q = GroupUniformWeightQuant.from_weight(conv.weight, 4, 16)
    assert q.scale.numel() == 4 * 2
    assert torch.equal(q.decode(q.codes(conv.weight)), q(conv.weight))


def test_bad_input_is_named():
    w = _weight(inp=96)
    with pytest.raises(LayerError, match="blocks.0.fc.*not a multiple of group_size 64"):
        GroupUniformWeightQuant.from_weight(w, 4, 64, name="blocks.0.fc")
    bad = _weight()
    bad[0, 0] = float("nan")
    with pytest.raises(LayerError, match="layer1"):
        GroupPWLQWeightQuant.from_weight(bad, 4, 32, name="layer1")
    with pytest.raises(ConfigError):
        GroupUniformWeightQuant.from_weight(_weight(), 9, 32)
    with pytest.raises(ConfigError):
        group_affine_qparams(_weight(), 4, 0)
    q = GroupUniformWeightQuant.from_weight(_weight(), 4, 32)
    with pytest.raises(ShapeError):
        q(torch.randn(3, 128))



def test_symmetric_group_uniform_and_bias_correction_are_stored_and_counted():
    w = _weight()
    q = GroupUniformWeightQuant.from_weight(w, 4, 64, symmetric=True)
    c = q.codes(w)["codes"]
    assert c.dtype == torch.int8 and int(c.min()) >= -8 and int(c.max()) <= 7
    assert torch.equal(q.decode(q.codes(w)), q(w))
    assert set(q.spec().tensors) == {"scale"}
    assert q.bits_per_weight(w.numel()) == pytest.approx(4 + 16 / 64)
    r = quantizer_from_spec(q.spec())
    assert r.symmetric and torch.equal(r(w), q(w))
    # per-output-channel bias correction: applied after the group dequantization and counted as parameters
    shift, gain = torch.full((12,), 1e-3), torch.full((12,), 1.01)
    q.set_bias_correction(shift, gain)
    assert torch.equal(q(w), (r(w) + 1e-3) * 1.01)
    assert q.bits_per_weight(w.numel()) == pytest.approx(4 + 16 / 64 + 2 * 32 * 12 / w.numel())
    assert torch.equal(quantizer_from_spec(q.spec())(w), q(w))


def test_fp16_breakpoints_keep_order_on_tiny_ranges():
    w = torch.full((4, 32), 1e-3)
    w[:, ::2] *= -1
    w[0, 0] = 2e-3
    p, m = group_pwlq_params(w, 4, 32)
    assert bool((p[:, 0] > 0).all() and (p[:, 0] < m).all())

"""The quantizer protocol (prunequant.core.quantizer): spec round trip for every registered quantizer (bit-exact),
integer forms equal to the fake-quant weight, registry errors, and the storage cost model's use of the protocol."""
import pytest
import torch

import prunequant.joint  # noqa: F401  (registers the joint quantizers)
import prunequant.quantization  # noqa: F401  (registers uniform, pwlq, log2)
from prunequant.core.cost import quantizer_state_bits, quantizer_value_bits, tensor_storage_bits
from prunequant.core.quantizer import (
    ActFakeQuant,
    QuantSpec,
    WeightFakeQuant,
    quantizer_class,
    quantizer_from_spec,
    register_quantizer,
    registered_schemes,
)
from prunequant.errors import ConfigError, StorageError
from prunequant.joint import ChannelBitsWeightQuant, SoftMixWeightQuant
from prunequant.quantization import Log2WeightQuant, PWLQWeightQuant, UniformWeightQuant
from prunequant.quantization.groupwise import GroupPWLQWeightQuant, GroupUniformWeightQuant

torch.set_num_threads(1)


def _weight(shape=(6, 5, 3)):
    torch.manual_seed(0)
    w = torch.randn(*shape)
    w[1] = 0.0  # an all-zero channel
    return w


def _fitted(scheme: str, w: torch.Tensor, bits: int, dim):
    """One fitted quantizer of each registered weight scheme (with bias correction where it applies)."""
    if scheme == "uniform":
        return UniformWeightQuant.from_weight(w, bits, symmetric=False, dim=dim)
    if scheme == "pwlq":
        return PWLQWeightQuant.from_weight(w, bits, n_breakpoints=2, dim=dim)
    if scheme == "log2":
        return Log2WeightQuant.from_weight(w, bits, dim=dim)
    if scheme == "channel-bits":
        cb = torch.tensor([0, 2, 3, 4, 8, 4, 5, 6])[: w.shape[0]]
        return ChannelBitsWeightQuant.from_weight(w, cb, dim=0)
    if scheme == "soft-mixture":
        q = SoftMixWeightQuant((0, 2, 4), ("uniform", "pwlq", "log2"), dim=dim,
                               scale_channels=w.shape[0] if dim == 0 else 1)
        q.refresh_breakpoints_(w)
        with torch.no_grad():
            q.mixture.logits.copy_(torch.tensor([0.1, 0.5, 0.2]))
        return q
    if scheme == "uniform-group":  # groups along the input dimension; dim does not apply
        return GroupUniformWeightQuant.from_weight(w, bits, 5)
    if scheme == "pwlq-group":
        return GroupPWLQWeightQuant.from_weight(w, bits, 5)
    raise AssertionError(f"no fixture for registered scheme {scheme!r}: add one")


def test_every_registered_scheme_has_a_fixture():
    w = _weight()
    for scheme in registered_schemes():  # a new quantizer must add a line to _fitted (and so get round-tripped)
        assert _fitted(scheme, w, 4, 0).scheme == scheme


@pytest.mark.parametrize("dim", [0, None])
@pytest.mark.parametrize("scheme", registered_schemes())
def test_spec_round_trip_is_bit_exact(scheme, dim):
    w = _weight()
    q = _fitted(scheme, w, 4, dim)
    if scheme in ("uniform", "pwlq", "log2"):
        shape = (6,) if dim == 0 else ()
        q.set_bias_correction(torch.randn(shape) * 0.01, 1 + torch.rand(shape) * 0.1)
    spec = q.spec()
    assert spec.scheme == scheme and isinstance(q, WeightFakeQuant)
    import json
    json.dumps(spec.attrs)  # attributes are JSON-able
    q2 = quantizer_from_spec(QuantSpec(spec.scheme, json.loads(json.dumps(spec.attrs)), spec.tensors))
    assert type(q2) is type(q)
    assert torch.equal(q2(w), q(w))
    if scheme != "soft-mixture":
        c = q.codes(w)
        assert torch.equal(q2.decode(c), q(w))  # codes of one decode with the other
        assert set(c) == set(q.code_bits())


@pytest.mark.parametrize("scheme,bits", [("uniform", 4), ("uniform", 8), ("log2", 3), ("log2", 4),
                                         ("channel-bits", 8)])
@pytest.mark.parametrize("dim", [0, None])
def test_int8_form_dequantizes_to_forward(scheme, bits, dim):
    w = _weight((8, 12))
    q = _fitted(scheme, w, bits, dim)
    form = q.int8_form(w)
    assert form is not None
    assert int(form.codes.min()) >= form.qmin and int(form.codes.max()) <= form.qmax
    assert torch.equal(form.dequantize(), q(w))
    assert q.int8_branches(w) is not None and len(q.int8_branches(w)) == 1


def test_no_int8_form_where_it_would_not_be_exact():
    w = _weight((8, 12))
    assert Log2WeightQuant.from_weight(w, 5).int8_form(w) is None          # 2^14 > 127
    assert UniformWeightQuant.from_weight(w, 12).int8_form(w) is None
    q = UniformWeightQuant.from_weight(w, 4)
    q.set_bias_correction(torch.zeros(8), torch.ones(8) * 1.1)
    assert q.int8_form(w) is None
    assert torch.equal(q.without_bias_correction()(w), UniformWeightQuant.from_weight(w, 4)(w))
    p = PWLQWeightQuant.from_weight(w, 4)
    assert p.int8_form(w) is None
    branches = p.int8_branches(w)
    assert len(branches) == 3  # 2 regions: 2 magnitude branches + 1 sign branch
    total = sum(f.dequantize() for f in branches)
    assert float((total - p(w)).abs().max()) <= 1e-6 * float(w.abs().max())  # up to the rounding of the sum


def test_act_quant_spec_round_trip():
    q = ActFakeQuant.from_range(-1.5, 3.0, 6)
    q2 = quantizer_from_spec(q.spec())
    x = torch.linspace(-4, 4, 101)
    assert isinstance(q2, ActFakeQuant) and torch.equal(q2(x), q(x))


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown quantizer scheme 'nope'"):
        quantizer_class("nope")
    with pytest.raises(StorageError, match="unknown quantizer scheme"):
        quantizer_from_spec(QuantSpec("nope", {}, {}))
    with pytest.raises(StorageError, match="lacks 'scale'"):
        quantizer_from_spec(QuantSpec("log2", {"bits": 4, "dim": 0}, {}))
    with pytest.raises(ConfigError, match="already registered"):
        @register_quantizer("uniform")
        class Other(WeightFakeQuant):
            pass
    with pytest.raises(ConfigError, match="not a WeightFakeQuant"):
        register_quantizer("x-doc")(int)


def test_cost_model_counts_code_streams_and_spec_state():
    w = _weight((8, 12))
    p = PWLQWeightQuant.from_weight(w, 4)
    assert quantizer_value_bits(p) == 5  # 4-bit code + 1 region bit
    assert quantizer_state_bits(p) == 8 * 32 * 2  # breakpoints (8, 1) + max_abs (8,), fp32
    u = UniformWeightQuant.from_weight(w, 4)
    assert quantizer_state_bits(u) == 8 * 32 * 2  # scale fp32 + zero point int32
    assert tensor_storage_bits(w, 4, 64) == 8 * 12 * 4 + 64  # 12 zeros of 96: dense is cheapest

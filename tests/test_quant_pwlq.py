"""PWLQ quantizer: Monte-Carlo check of eq. 4, level counts, idempotence, half-step error bound, codes,
degenerate channels (hypothesis property tests on random channels)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunequant.errors import LayerError, ShapeError
from prunequant.quantization import (
    PWLQWeightQuant,
    expected_error,
    find_breakpoints,
    pwlq_codes,
    pwlq_dequantize,
    pwlq_level_count,
    pwlq_levels,
    pwlq_quantize,
)
from prunequant.quantization.pwlq_ops import bounds, region_steps

torch.set_num_threads(1)
PROPS = settings(max_examples=40, deadline=None)


def _weights(seed: int, C: int, K: int, dist: str, zero_frac: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        w = torch.randn(C, K, generator=g)
    elif dist == "laplace":
        u = torch.rand(C, K, generator=g) - 0.5
        w = -torch.sign(u) * torch.log1p(-2 * u.abs())
    elif dist == "student":
        w = torch.randn(C, K, generator=g) / torch.sqrt(torch.rand(C, K, generator=g) + 0.05)
    else:
        w = torch.rand(C, K, generator=g) * 2 - 1
    w = w * torch.exp(torch.randn(C, 1, generator=g))  # per-channel scales
    w[torch.rand(C, K, generator=g) < zero_frac] = 0.0
    return w


channels = st.builds(_weights, st.integers(0, 10 ** 6), st.integers(1, 6), st.integers(2, 80),
                     st.sampled_from(["normal", "laplace", "student", "uniform"]), st.sampled_from([0.0, 0.3]))


def _random_breakpoints(w, n, seed):
    g = torch.Generator().manual_seed(seed)
    m = w.abs().amax(1)
    r = torch.sort(torch.rand(w.shape[0], n, generator=g) * 0.9 + 0.05, 1).values
    r = r + 1e-3 * torch.arange(n)  # strictly increasing
    return r.clamp(max=0.999) * m[:, None], m


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_monte_carlo_matches_eq4(bits):
    """Paper quantizer (eq. 3) on a unit normal truncated at m = 4, p = p* = 1.392: MC MSE vs eq. 4 (< 2%)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3_000_000, generator=g, dtype=torch.float64)
    x = x[x.abs() <= 4.0]
    m, p = torch.tensor([4.0], dtype=torch.float64), torch.tensor([[1.392]], dtype=torch.float64)
    mc = float(((pwlq_quantize(x, bits, p, m, variant="paper", dim=None) - x) ** 2).mean())
    theory = float(expected_error(torch.tensor([1.392]), 4.0, bits))
    assert abs(mc / theory - 1) < 0.02
    # the b-center variant has two more levels and a lower error; uniform is far worse (notes' MC table)
    mc_c = float(((pwlq_quantize(x, bits, p, m, variant="b_center", dim=None) - x) ** 2).mean())
    assert mc_c < mc
    uni = (2 * 4.0 / (2 ** bits - 1)) ** 2 / 12
    assert mc < 0.2 * uni


@pytest.mark.parametrize("variant", ["paper", "b_center"])
@PROPS
@given(w=channels, bits=st.integers(2, 8), n=st.integers(1, 3), seed=st.integers(0, 1000))
def test_quantizer_properties(variant, w, bits, n, seed):
    p, m = _random_breakpoints(w, n, seed)
    q = pwlq_quantize(w, bits, p, m, variant=variant)
    # idempotent with fixed parameters
    assert torch.equal(pwlq_quantize(q, bits, p, m, variant=variant), q)
    # every output is one of the scheme's levels; no more distinct values than its level count
    L = pwlq_levels(bits, p, m, variant)
    assert L.shape[1] == pwlq_level_count(bits, n, variant)
    assert bool(torch.isin(q, L).all()) if w.shape[0] == 1 else all(
        bool(torch.isin(q[c], L[c]).all()) for c in range(w.shape[0]))
    assert max(len(torch.unique(q[c])) for c in range(w.shape[0])) <= pwlq_level_count(bits, n, variant)
    # error at most half a step of the weight's region (inside the range [-m, m])
    codes = pwlq_codes(w, bits, p, m, variant=variant)
    steps = region_steps(bounds(p, m), bits, variant).gather(1, codes["region"].long())
    assert bool(((q - w).abs() <= steps / 2 + 1e-6 * m[:, None]).all())
    # codes are b-bit signed, decode exactly
    assert int(codes["codes"].min()) >= -(2 ** (bits - 1)) and int(codes["codes"].max()) <= 2 ** (bits - 1) - 1
    assert int(codes["region"].max()) <= n
    assert torch.equal(pwlq_dequantize(codes["codes"], codes["region"], bits, p, m, variant=variant), q)
    # zeros stay exactly zero, signs are kept
    assert bool((q[w == 0] == 0).all())
    assert bool((q * w >= 0).all())


@PROPS
@given(w=channels, bits=st.integers(2, 8),
       method=st.sampled_from(["empirical", "gaussian_closed", "laplace_closed", "gaussian_bisect",
                               "laplace_bisect"]))
def test_breakpoint_inside_its_range(w, bits, method):
    # prior-based methods keep the paper's (0, m/2); the empirical search scans the configured range
    p = find_breakpoints(w, bits, method=method)
    m = w.abs().amax(1)
    nz = m > 0
    hi = 0.95 if method == "empirical" else 0.5
    assert bool((p[nz, 0] > 0).all()) and bool((p[nz, 0] <= hi * m[nz] * (1 + 1e-6)).all())
    assert bool((p[nz, 0] < m[nz]).all())
    assert bool((p[~nz] == 0).all())
    capped = find_breakpoints(w, bits, method=method, ratio_range=(0.001, 0.499))
    assert bool((capped[nz, 0] < m[nz] / 2).all())


def test_level_counts():
    assert pwlq_level_count(4, 1, "paper") == 29 and pwlq_level_count(4, 1, "b_center") == 31
    assert pwlq_level_count(4, 2, "paper") == 43 and pwlq_level_count(4, 3, "b_center") == 59
    assert pwlq_level_count(8, 1, "b_center") == 2 ** 9 - 1


def test_degenerate_channels_exact():
    """All-zero channels and constant-magnitude channels are reproduced exactly (documented behaviour)."""
    w = torch.zeros(4, 10)
    w[1] = 0.7
    w[2, ::2], w[2, 1::2] = -0.3, 0.3
    w[3] = torch.linspace(-1, 1, 10)
    for variant in ("paper", "b_center"):
        for n in (1, 2, 3):
            p = find_breakpoints(w, 4, n_breakpoints=n)
            q = pwlq_quantize(w, 4, p, variant=variant)
            assert torch.equal(q[:3], w[:3])
    assert torch.equal(pwlq_quantize(torch.zeros(3, 3), 4, torch.zeros(3, 1)), torch.zeros(3, 3))


def test_straight_through_gradient():
    w = torch.randn(4, 30, requires_grad=True)
    p = find_breakpoints(w.detach(), 4)
    m = w.detach().abs().amax(1) * 0.8  # clip the top 20% of the range
    pwlq_quantize(w, 4, p.clamp(max=0.3 * m[:, None]), m).sum().backward()
    inside = w.detach().abs() <= m[:, None]
    assert torch.equal(w.grad, inside.float())


def test_bad_breakpoints_and_shapes():
    w = torch.randn(3, 8)
    m = w.abs().amax(1)
    with pytest.raises(LayerError, match="channel 1"):
        pwlq_quantize(w, 4, torch.stack([0.2 * m[0], 1.5 * m[1], 0.2 * m[2]])[:, None], m)
    with pytest.raises(LayerError, match="0 < p_1"):
        pwlq_quantize(w, 4, torch.stack([0.5 * m, 0.2 * m], 1), m)
    with pytest.raises(ShapeError):
        pwlq_quantize(w, 4, torch.rand(2, 1), m)
    with pytest.raises(ShapeError):
        pwlq_quantize(w, 4, torch.rand(3, 4), m)


def test_parametrization_round_trip_and_state():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 4, 3, 3, generator=g)
    quant = PWLQWeightQuant.from_weight(w, 4, n_breakpoints=2, variant="paper")
    q = quant(w)
    assert torch.equal(quant.decode(quant.codes(w)), q)
    assert set(quant.export_state()) == {"breakpoints", "max_abs"}
    assert quant.bits == 4 and quant.scheme == "pwlq" and quant.granularity == "channel"
    assert 0.2 < quant.center_fraction(w) < 1.0
    one = PWLQWeightQuant.from_weight(w, 4)  # one breakpoint: most weights sit in the center
    assert 0.6 < one.center_fraction(w) < 1.0
    per_tensor = PWLQWeightQuant.from_weight(w, 4, dim=None)
    assert per_tensor.breakpoints.shape == (1, 1)
    assert torch.equal(per_tensor.decode(per_tensor.codes(w)), per_tensor(w))

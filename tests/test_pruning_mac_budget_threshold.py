"""MAC-budget threshold math on synthetic layers: error definition, monotonicity, q-bisection, allowances, eps0."""
import itertools

import pytest
import torch

from prunequant.errors import ConfigError
from prunequant.pruning.mac_budget.allowance import allowance_factors
from prunequant.pruning.mac_budget.planner import RoundPlanner
from prunequant.pruning.mac_budget.threshold import SortedMagnitudes, bisect_q, pruning_error

torch.set_num_threads(1)


def _layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(64, 32, 3, 3, generator=g) * 0.05,          # gaussian conv
            torch.distributions.Laplace(0.0, 0.2).sample((300, 40)),  # heavy tails
            (torch.rand(1000, generator=g) - 0.5) * 3.0,             # uniform
            torch.randn(10, 7, generator=g)]                         # small


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("error_scale", ["power_mean", "per_pruned"])
@pytest.mark.parametrize("relative", [False, True])
def test_sorted_error_equals_direct_definition(norm, error_scale, relative):
    ws = _layers()
    g = torch.Generator().manual_seed(1)
    alive = [torch.rand(w.shape, generator=g) > 0.3 for w in ws]
    mags = SortedMagnitudes.build(ws, alive, norm=norm, error_scale=error_scale, relative=relative)
    for q in (0.0, 0.1, 0.37, 0.9, 1.5, 3.0, 10.0):
        e, k = mags.error_at_q(torch.full((len(ws),), q, dtype=torch.float64))
        keeps = mags.keep_masks(k, ws, alive)
        for l, w in enumerate(ws):
            ref_e, ref_keep = pruning_error(w, q, alive[l], norm, error_scale, relative)
            assert e[l].item() == pytest.approx(ref_e, rel=1e-9, abs=1e-12)
            assert torch.equal(keeps[l], ref_keep), (l, q)
            assert int(k[l]) == int((alive[l] & ~ref_keep).sum())


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_error_per_weight_is_monotone_in_q(norm):
    g = torch.Generator().manual_seed(3)
    ws = _layers() + [torch.sign(torch.randn(500, generator=g)) * 0.1]  # constant magnitude
    mags = SortedMagnitudes.build(ws, norm=norm)
    qs = torch.linspace(0, 4, 401, dtype=torch.float64)
    errs = torch.stack([mags.error_at_q(torch.full((len(ws),), float(q), dtype=torch.float64))[0] for q in qs])
    assert (errs.diff(dim=0) >= -1e-12).all()
    assert (errs[-1] > errs[1]).any()  # it actually moves


def test_literal_l2_error_is_monotone_for_gaussian_layer():
    w = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    mags = SortedMagnitudes.build([w], norm="l2", error_scale="per_pruned")
    errs = torch.stack([mags.error_at_q(torch.tensor([q], dtype=torch.float64))[0]
                        for q in torch.linspace(0.05, 3, 200).tolist()])
    assert (errs.diff(dim=0) >= -1e-12).all()


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_bisection_converges_to_allowance(norm):
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(50000, generator=g) * s for s in (0.02, 0.1, 1.0)]
    mags = SortedMagnitudes.build(ws, norm=norm)
    sig = mags.sigma
    for frac in (0.05, 0.2, 0.5):
        eps = frac * sig  # allowances in each layer's own scale
        res = bisect_q(mags, eps, 0.0, 4.0, tol=1e-6)
        assert (res.error <= eps).all()
        assert torch.allclose(res.error, eps, rtol=5e-3)  # within tolerance of the allowance
        # the next weight would break the allowance: q is the largest admissible one (to the bracket tol)
        e_next, _ = mags.error_at_q(res.q + 1e-5)
        assert (e_next >= res.error).all()
        assert res.iterations <= 60


def test_bisection_bracket_ends():
    ws = _layers()
    mags = SortedMagnitudes.build(ws)
    big = bisect_q(mags, torch.full((4,), 1e9, dtype=torch.float64), 0.0, 2.5)
    assert torch.allclose(big.q, torch.full((4,), 2.5, dtype=torch.float64))
    zero = bisect_q(mags, torch.zeros(4, dtype=torch.float64), 0.0, 2.5)
    assert (zero.pruned == 0).all() and (zero.error == 0).all()
    with pytest.raises(ConfigError):
        bisect_q(mags, torch.full((4,), -1.0, dtype=torch.float64))
    with pytest.raises(ConfigError):
        bisect_q(mags, torch.ones(4, dtype=torch.float64), q_min=2.0, q_max=1.0)


def test_zero_variance_and_single_weight_layers_give_no_nan():
    ws = [torch.full((5, 5), 0.3), torch.zeros(8), torch.tensor([0.7]), torch.randn(100)]
    mags = SortedMagnitudes.build(ws)
    assert torch.isfinite(mags.sigma).all()
    assert mags.sigma[0] == 0 and mags.sigma[1] == 0 and mags.sigma[2] == 0
    res = bisect_q(mags, torch.full((4,), 0.05, dtype=torch.float64))
    assert torch.isfinite(res.error).all() and torch.isfinite(res.q).all()
    assert res.pruned[:3].tolist() == [0, 0, 0]  # threshold q * 0 prunes nothing
    e, _ = pruning_error(torch.full((3, 3), 2.0), 1.0)
    assert e == 0.0


def test_allowance_factors_rules():
    macs = torch.tensor([9216.0, 73728.0, 73728.0, 640.0])   # digits CNN layers
    n = torch.tensor([144.0, 4608.0, 18432.0, 640.0])
    f = allowance_factors(macs, n, "mac_share")
    assert f.mean().item() == pytest.approx(1.0)
    assert f.tolist() == pytest.approx((4 * macs / macs.sum()).tolist())
    g = allowance_factors(macs, n, "macs_per_weight")
    assert g.tolist() == pytest.approx([64 / 21.25, 16 / 21.25, 4 / 21.25, 1 / 21.25])
    h = allowance_factors(macs, n, "mac_share", power=0.5, clip=(0.2, 1.5))
    assert h.tolist() == pytest.approx(f.sqrt().clamp(0.2, 1.5).tolist())
    with pytest.raises(ConfigError):
        allowance_factors(macs, n, "flops")
    with pytest.raises(ConfigError):
        allowance_factors(macs, n[:2])


def _planner(ws, max_frac=1.0):
    mags = SortedMagnitudes.build(ws)
    counts = mags.count
    mpw = [64.0, 16.0, 4.0, 1.0]
    uses = [torch.full(w.shape, u, dtype=torch.float64) for w, u in zip(ws, mpw)]
    factors = allowance_factors([float(u.sum()) for u in uses], counts)
    dense = sum(float(u.sum()) for u in uses) + 1000.0
    kmax = (counts.double() * max_frac).floor().long()
    return RoundPlanner(mags, factors, torch.zeros(4, dtype=torch.long), kmax, mags.sorted_prefix(uses),
                        dense, dense)


def test_mac_model_prefix_counts_uses_of_pruned_weights():
    ws = _layers()
    g = torch.Generator().manual_seed(2)
    alive = [torch.rand(w.shape, generator=g) > 0.2 for w in ws]
    uses = [torch.randint(1, 9, w.shape, generator=g).double() for w in ws]
    mags = SortedMagnitudes.build(ws, alive)
    prefix = mags.sorted_prefix(uses, alive)
    k = torch.tensor([10, 0, 57, 33])
    keeps = mags.keep_masks(k, ws, alive)
    for l in range(4):
        removed = prefix[mags.start[l] + k[l]] - prefix[mags.start[l]]
        assert removed.item() == pytest.approx(float(uses[l][alive[l] & ~keeps[l]].sum()))


def test_eps0_search_meets_mac_target_and_is_monotone():
    ws = _layers()
    planner = _planner(ws)
    reds = [planner.at(e).reduction for e in torch.logspace(-4, 1, 30).tolist()]
    assert all(b >= a for a, b in itertools.pairwise(reds))
    for target in (0.1, 0.3, 0.5, 0.7):
        plan = planner.search(target)
        assert target <= plan.reduction <= target + 1e-3  # steps: weights within the q tolerance flip together
        assert (plan.error <= plan.allowance + 1e-15).all()


def test_pruned_fraction_bounds_and_unreachable_target():
    ws = _layers()
    planner = _planner(ws, max_frac=0.5)
    plan = planner.search(0.45)
    assert (plan.pruned <= planner.k_max).all()
    assert "max" in plan.clamp
    with pytest.raises(ConfigError, match="unreachable"):
        planner.search(0.9)

"""Lloyd-Max reference: never above its initial grids (uniform, PWLQ), monotone, exact on clustered data."""
import itertools

import torch

from prunequant.quantization import (
    find_breakpoints,
    lloyd_max,
    lloyd_max_mse,
    nearest_level_sse,
    pwlq_level_count,
    pwlq_levels,
    pwlq_quantize,
    uniform_levels,
)

torch.set_num_threads(1)


def test_recovers_cluster_means():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([-2.0, 0.5, 3.0])
    x = (centers[torch.randint(0, 3, (2, 300), generator=g)] + 0.01 * torch.randn(2, 300, generator=g))
    lev, sse = lloyd_max(x, torch.tensor([[-1.0, 0.0, 1.0]] * 2))
    assert torch.allclose(lev.float(), centers.expand(2, 3), atol=0.01)
    assert float(sse.sum()) < 2 * 600 * 1e-4 * 1.5


def test_never_above_pwlq_and_uniform_and_monotone():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 400, generator=g) / torch.sqrt(torch.rand(20, 400, generator=g) + 0.05)
    for bits in (3, 4):
        L = pwlq_level_count(bits, 1)
        p = find_breakpoints(w, bits)
        m = w.abs().amax(1)
        pw_sse = ((pwlq_quantize(w, bits, p, m) - w) ** 2).double().sum(1)
        grid = pwlq_levels(bits, p, m)
        mse, lev = lloyd_max_mse(w, L, inits=[grid])
        assert lev.shape == (20, L)
        lm_sse = nearest_level_sse(w, lev)
        assert bool((lm_sse <= pw_sse * (1 + 1e-9)).all())
        assert bool((lm_sse <= nearest_level_sse(w, uniform_levels(w, L)) * (1 + 1e-9)).all())
        assert abs(mse - float(lm_sse.sum()) / w.numel()) < 1e-9
        # more iterations never raise the error
        e = [float(lloyd_max(w, grid, max_iter=k)[1].sum()) for k in (1, 3, 10, 50)]
        assert all(a >= b - 1e-9 for a, b in itertools.pairwise(e))


def test_sorted_error_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 77, generator=g)
    lev = torch.sort(torch.randn(5, 9, generator=g), 1).values
    brute = ((x[:, :, None] - lev[:, None, :]) ** 2).min(-1).values.double().sum(1)
    assert torch.allclose(nearest_level_sse(x, lev), brute, rtol=1e-6)


def test_multi_start_keeps_best_of_uniform_quantile_and_extra_grid():
    from prunequant.quantization.lloyd_max import lloyd_max_references, quantile_levels

    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 400, generator=g) / torch.sqrt(torch.rand(6, 400, generator=g) * 0.95 + 0.05)
    L = 15
    best, _ = lloyd_max_mse(w, L)
    singles = [lloyd_max(w, start)[1] for start in (uniform_levels(w, L, 0), quantile_levels(w, L))]
    per_channel_best = torch.minimum(*singles)
    assert abs(best - float(per_channel_best.sum() / w.numel())) <= 1e-12 + 1e-9 * best
    # heavy tails: the quantile start beats the uniform start on some channel (why several starts matter)
    assert bool((singles[1] < singles[0] * (1 - 1e-6)).any())
    refs = lloyd_max_references(w, 31, 5, inits=[pwlq_levels(4, find_breakpoints(w, 4), w.abs().amax(1))])
    assert refs["levels_equal_storage"] == 32
    assert refs["same_storage"] <= refs["same_levels"] * (1 + 1e-9)
    # the reference is never above the PWLQ grid it was also started from
    q = pwlq_quantize(w, 4, find_breakpoints(w, 4))
    assert refs["same_levels"] <= float(((q - w) ** 2).mean()) * (1 + 1e-9)

"""Breakpoint methods: exact table of the notes, closed forms, multi-breakpoint optimum, empirical search
(exact sorted-prefix errors, vectorized == per-channel loop, never worse than the closed form)."""
import pytest
import torch

from prunequant.errors import ConfigError, LayerError
from prunequant.quantization import (
    ChannelErrors,
    bisect_breakpoints,
    closed_form_breakpoint,
    expected_error,
    find_breakpoints,
    pwlq_quantize,
)

torch.set_num_threads(1)

# notes part A.3: m~ -> exact p~* (Gaussian root, Laplacian root), E/C(b-1) at the Gaussian p*
TABLE = [(3, 1.1583, 1.0678, 1.8475), (4, 1.3920, 1.2909, 2.7350), (5, 1.5889, 1.4865, 3.5458),
         (6, 1.7547, 1.6601, 4.2642), (8, 2.0150, 1.9564, 5.4546), (10, 2.2096, 2.2020, 6.3966)]


def test_bisection_reproduces_exact_table():
    m = torch.tensor([r[0] for r in TABLE], dtype=torch.float64)
    g = bisect_breakpoints(m, 1, "gaussian")[:, 0]
    lap = bisect_breakpoints(m, 1, "laplace")[:, 0]
    assert torch.allclose(g, torch.tensor([r[1] for r in TABLE], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(lap, torch.tensor([r[2] for r in TABLE], dtype=torch.float64), atol=1e-3)
    e = expected_error(g[:, None], m, 4) / (1.0 / (12 * 7 ** 2))
    assert torch.allclose(e, torch.tensor([r[3] for r in TABLE], dtype=torch.float64), atol=1e-3)


def test_closed_forms_within_001_on_3_to_10():
    """Within 0.01 as a breakpoint ratio p/m and within 1% relative. (In std units the fits drift up to 0.012
    (Gaussian) and 0.021 (Laplacian) at m~ = 10, as the notes' own table shows, so 0.01 absolute in p~ does not
    hold at the top of the range; the cost in expected error stays below 0.3%.)"""
    m = torch.linspace(3, 10, 141, dtype=torch.float64)
    for prior, worst_abs in (("gaussian", 0.0121), ("laplace", 0.0209)):
        exact = bisect_breakpoints(m, 1, prior)[:, 0]
        approx = closed_form_breakpoint(m, prior)
        assert float(((approx - exact) / m).abs().max()) < 0.01
        assert float(((approx - exact) / exact).abs().max()) < 0.01
        assert float((approx - exact).abs().max()) < worst_abs
        cost = expected_error(approx[:, None], m, 4) / expected_error(exact[:, None], m, 4) - 1
        assert float(cost.max()) < 3e-3
    # the notes' worked values for the table rows
    assert float(closed_form_breakpoint(torch.tensor(4.0))) == pytest.approx(1.3996, abs=1e-4)
    assert float(closed_form_breakpoint(torch.tensor(4.0), "laplace")) == pytest.approx(1.2894, abs=1e-4)


def test_multi_breakpoint_bisection_is_a_minimum():
    m = torch.tensor([3.0, 4.0, 8.0], dtype=torch.float64)
    for n in (2, 3):
        p = bisect_breakpoints(m, n, "gaussian")
        assert bool((p[:, 1:] > p[:, :-1]).all()) and bool((p < m[:, None]).all())
        e0 = expected_error(p, m, 4)
        for i in range(n):  # any single move increases the expected error
            for d in (-1e-3, 1e-3):
                q = p.clone()
                q[:, i] += d
                assert bool((expected_error(q, m, 4) >= e0 - 1e-15).all())
    # more breakpoints, lower expected error (same bits)
    e = [float(expected_error(bisect_breakpoints(m[1:2], n), m[1:2], 4)) for n in (1, 2, 3)]
    assert e[0] > e[1] > e[2]


def _heavy(C, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(C, K, generator=g) / torch.sqrt(torch.rand(C, K, generator=g) * 0.9 + 0.1)


@pytest.mark.parametrize("variant", ["paper", "b_center"])
@pytest.mark.parametrize("n", [1, 3])
def test_sorted_prefix_error_equals_direct(variant, n):
    w = _heavy(16, 400)
    a = w.abs()
    m = a.amax(1)
    g = torch.Generator().manual_seed(1)
    r = torch.sort(torch.rand(16, 7, n, generator=g) * 0.9 + 0.05, -1).values
    P = torch.cat([torch.zeros(16, 7, 1), r * m[:, None, None], m[:, None, None].expand(16, 7, 1)], -1)
    err = ChannelErrors(a, 4, variant)
    assert err._use_sorted(n)
    direct = err._sse_direct(P)
    assert torch.allclose(err._sse_sorted(P.double()), direct, rtol=1e-5, atol=1e-6)
    # and equals the quantizer's own squared error
    q = pwlq_quantize(w, 4, P[:, 0, 1:-1], m, variant=variant)
    assert torch.allclose(((q - w) ** 2).double().sum(1), direct[:, 0], rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2])
def test_vectorized_search_equals_per_channel_loop(n):
    w = _heavy(12, 300, seed=2)
    w[3, :] = 0.0  # degenerate channel
    vec = find_breakpoints(w, 4, "empirical", n)
    loop = torch.cat([find_breakpoints(w[c:c + 1], 4, "empirical", n) for c in range(12)])
    assert torch.allclose(vec, loop, rtol=1e-6, atol=0)


def test_empirical_beats_closed_form_and_is_near_brute_force():
    w = _heavy(32, 500, seed=3)
    m = w.abs().amax(1)

    def sse(p):
        return ((pwlq_quantize(w, 4, p, m) - w) ** 2).sum(1)

    emp = sse(find_breakpoints(w, 4, "empirical"))
    assert float(emp.sum()) <= float(sse(find_breakpoints(w, 4, "gaussian_closed")).sum())
    ratios = torch.linspace(0.001, 0.499, 1000)
    brute = torch.stack([sse((r * m)[:, None]) for r in ratios], 1).min(1).values
    assert float((emp / brute).max()) < 1.02
    # more breakpoints never hurt on these heavy-tailed channels
    e2 = sse(find_breakpoints(w, 4, "empirical", 2))
    e3 = sse(find_breakpoints(w, 4, "empirical", 3))
    assert float(e3.sum()) < float(e2.sum()) < float(emp.sum())


def test_per_tensor_and_shapes():
    w = torch.randn(5, 3, 3, 3)
    assert find_breakpoints(w, 4, dim=None).shape == (1, 1)
    assert find_breakpoints(w, 4, n_breakpoints=3).shape == (5, 3)
    assert find_breakpoints(w.transpose(0, 1), 4, dim=1).shape == (5, 1)


def test_bad_arguments():
    w = torch.randn(4, 4)
    with pytest.raises(ConfigError, match="method"):
        find_breakpoints(w, 4, method="magic")
    with pytest.raises(ConfigError, match="one breakpoint"):
        find_breakpoints(w, 4, method="gaussian_closed", n_breakpoints=2)
    with pytest.raises(ConfigError, match="n_breakpoints"):
        find_breakpoints(w, 4, n_breakpoints=4)
    with pytest.raises(ConfigError, match="bits"):
        find_breakpoints(w, 17)
    w[0, 0] = float("nan")
    with pytest.raises(LayerError, match="fc1"):
        find_breakpoints(w, 4, name="fc1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    w = _heavy(64, 200, seed=4)
    for method in ("empirical", "gaussian_bisect", "gaussian_closed"):
        cpu = find_breakpoints(w, 4, method)
        gpu = find_breakpoints(w.cuda(), 4, method).cpu()
        assert torch.allclose(cpu, gpu, rtol=1e-3, atol=1e-6)


def _sse_of(w, bits, ratio):
    m = w.abs().amax(1)
    return ((pwlq_quantize(w, bits, (ratio * m)[:, None], m) - w).double() ** 2).sum(1)


def _check_searches_against_dense_grid(w, bits, step):
    """Asserts, for one layer ``w`` (C, K): the default ("auto") search is within 0.1% of a dense grid on every
    channel it solves exactly and never worse than the old capped search on the layer. Returns (worst ratio of the
    exact search's SSE to the dense grid's over the channels, number of channels whose dense optimum has p/m > 0.5).
    """
    from prunequant.quantization.breakpoints import CAPPED_RANGE, EXACT_MAX_EVENTS, dense_grid_breakpoints

    m = w.abs().amax(1)
    r_dense, dense = dense_grid_breakpoints(w, bits, step=step)
    exact = _sse_of(w, bits, find_breakpoints(w, bits, search="exact")[:, 0] / m)
    auto = _sse_of(w, bits, find_breakpoints(w, bits)[:, 0] / m)
    if w.shape[1] * (2 ** bits - 1) <= EXACT_MAX_EVENTS:
        assert bool((auto <= dense * 1.001 + 1e-12).all())
    capped = _sse_of(w, bits, find_breakpoints(w, bits, ratio_range=CAPPED_RANGE)[:, 0] / m)
    assert float(auto.sum()) <= float(capped.sum()) * 1.001
    return float((exact / dense.clamp(min=1e-30)).max()), int((r_dense > 0.5).sum())


@pytest.mark.parametrize("variant", ["b_center", "paper"])
def test_exact_search_matches_dense_grid_on_small_channels(variant):
    from prunequant.quantization.breakpoints import dense_grid_breakpoints

    w = _heavy(24, 27, seed=5)
    for bits in (2, 3, 4, 6):
        p = find_breakpoints(w.double(), bits, search="exact", variant=variant)
        m = w.abs().amax(1).double()
        e = ChannelErrors(w.abs().double(), bits, variant).sse(
            torch.stack([torch.zeros_like(m), p[:, 0], m], -1)[:, None])[:, 0]
        _, dense = dense_grid_breakpoints(w.double(), bits, step=1e-4, variant=variant)
        gap = float((e / dense - 1).max())
        assert gap <= 1e-6, (bits, gap)


def test_full_range_within_01pct_of_dense_grid_on_reference_models():
    """Issue 15: on every channel of the trained digits reference models (CNN, ResNet-style, MobileNet-style),
    the exact search is never worse than a dense grid search (step 2e-4 over p/m in [0.001, 0.95]) by more than
    0.1%, at 2, 3 and 4 bits; the default ("auto") search is within 0.1% on the channels it solves exactly and
    never worse than the old capped search on any layer."""
    from prunequant.models.reference import train_reference

    worst_exact, above_half = 0.0, 0
    for name in ("digits_cnn", "resnet_small", "mobilenet_small"):
        model, _ = train_reference(name, seed=0)
        for mod in model.modules():
            if not isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            w = mod.weight.detach().reshape(mod.weight.shape[0], -1)
            for bits in (2, 3, 4):
                worst, above = _check_searches_against_dense_grid(w, bits, step=2e-4)
                worst_exact, above_half = max(worst_exact, worst), above_half + above
    assert worst_exact <= 1.001
    assert above_half > 0  # the optimum does lie above m/2 on some channels: the old cap cut it off


def test_ratio_range_and_search_validation():
    w = _heavy(4, 50)
    for bad in ((0.0, 0.5), (0.6, 0.5), (0.1, 1.0), "x", (0.1,)):
        with pytest.raises(ConfigError):
            find_breakpoints(w, 4, ratio_range=bad)
    with pytest.raises(ConfigError):
        find_breakpoints(w, 4, search="fast")
    p = find_breakpoints(w, 4, ratio_range=(0.2, 0.3))
    r = p[:, 0] / w.abs().amax(1)
    assert bool(((r >= 0.2 - 1e-6) & (r <= 0.3 + 1e-6)).all())


def _fashion_shaped_layers_after_sgd_on_synthetic_images():
    """Conv/linear weights (BN folded) of FashionResNet and FashionMobileNetV2 at width 0.25 after 20 Adam steps
    on generated 28x28 images (10 class templates + noise): the reference models' layer shapes (depthwise 3x3,
    1x1 expansions, 3x3 convs, the 1280-wide head) without the dataset; not the trained weights' distributions."""
    from prunequant.models.fashion import FashionMobileNetV2, FashionResNet
    from prunequant.quantization import fold_batchnorm

    g = torch.Generator().manual_seed(0)
    templates = torch.randn(10, 1, 28, 28, generator=g)
    layers = []
    for i, cls in enumerate((FashionResNet, FashionMobileNetV2)):
        torch.manual_seed(i)
        model = cls(width=0.25)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(20):
            y = torch.randint(0, 10, (32,), generator=g)
            x = templates[y] + 0.5 * torch.randn(32, 1, 28, 28, generator=g)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        fold_batchnorm(model)
        layers += [mod.weight.detach().reshape(mod.weight.shape[0], -1) for mod in model.modules()
                   if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    return layers


def test_exact_search_within_01pct_of_dense_grid_on_fashion_shaped_layers_after_sgd_on_synthetic_images():
    """Issue 15, CI stand-in for the Fashion-MNIST reference models (benchmarks/pwlq_mse.py reports the same
    check on the trained ones at step 2e-4): on every channel of every layer, at 2, 3 and 4 bits, the exact search
    is never worse than a dense grid (step 1e-3 over p/m in [0.001, 0.95], to keep CI short) by more than 0.1%, the
    default ("auto") search is within 0.1% on the channels it solves exactly and never worse than the old capped
    search on a layer."""
    layers = _fashion_shaped_layers_after_sgd_on_synthetic_images()
    assert any(w.shape[1] == 9 for w in layers) and any(w.shape[0] == 1280 for w in layers)  # depthwise, head
    worst_exact, channels = 0.0, 0
    for w in layers:
        for bits in (2, 3, 4):
            worst_exact = max(worst_exact, _check_searches_against_dense_grid(w, bits, step=1e-3)[0])
        channels += w.shape[0]
    assert worst_exact <= 1.001, worst_exact
    assert channels > 2000

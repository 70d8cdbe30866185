"""The HAWQ-style peer of benchmarks/joint.py (benchmark-only code): Hutchinson trace and the knapsack allocation."""
import importlib.util
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "joint.py"
    spec = importlib.util.spec_from_file_location("joint_benchmark", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_hutchinson_trace_is_exact_for_a_diagonal_hessian(bench):
    """L = Σ c_i w_i² has H = diag(2c): vᵀHv = Σ 2c_i for every Rademacher v, so the estimate is exact."""
    model = nn.Sequential(nn.Linear(1, 5, bias=False), nn.Linear(5, 1, bias=False))
    c = torch.arange(1.0, 6.0)

    def loss_fn(out, y):  # depends on the first layer's weights only through its output
        h = model[0](torch.ones(1, 1))
        return (c * h.squeeze(0) ** 2).sum() + 0 * out.sum()

    traces = bench.hutchinson_traces(model, [(torch.ones(1, 1), None)], loss_fn, samples=3)
    assert math.isclose(traces["0.weight"], float(2 * c.sum()), rel_tol=1e-5)
    assert traces["1.weight"] == 0.0


def test_knapsack_allocation_is_near_the_brute_force_optimum_within_budget(bench):
    g = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(20):
        options = []
        for _layer in range(4):
            bits = sorted(torch.randint(1, 100, (4,), generator=g).tolist())
            omega = sorted(torch.rand(4, generator=g).tolist(), reverse=True)  # more bits, less error
            options.append(list(zip(omega, map(float, bits))))
        budget = float(torch.randint(60, 300, (1,), generator=g))
        feasible = [c for c in itertools.product(range(4), repeat=4)
                    if sum(options[i][j][1] for i, j in enumerate(c)) <= budget]
        choice = bench.hawq_allocate(options, budget)
        used = sum(options[i][j][1] for i, j in enumerate(choice))
        if not feasible:
            continue
        best = min(sum(options[i][j][0] for i, j in enumerate(c)) for c in feasible)
        got = sum(options[i][j][0] for i, j in enumerate(choice))
        assert used <= budget
        assert got >= best - 1e-9
        ratios.append(got / best)
    assert max(ratios) <= 1.25 and sum(r == 1.0 for r in ratios) >= len(ratios) // 2, ratios

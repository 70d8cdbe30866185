"""Weight MSE of PWLQ vs uniform quantization vs Lloyd-Max (the optimum for a level count).

Part 1 reproduces the notes' Monte-Carlo table: unit normal truncated at m = 4, breakpoint p* = 1.392, uniform
vs PWLQ (paper eq. 3 and the b-center variant) vs eq. 4, at 4/6/8 bits.

Part 2 takes every trained reference model of the repo (digits CNN, MLP, ResNet-style, MobileNet-style; the
glucose LSTM when the app exposes a trained one), folds BN as the PWLQ pipeline does, and for every weight
reports the per-channel MSE of uniform-b, uniform-(b+1), PWLQ-b with 1/2/3 breakpoints (b-center variant,
empirical breakpoints, plus the Gaussian closed form for 1 breakpoint) and Lloyd-Max with the same number of
levels as each PWLQ scheme (started from the uniform grid, the per-channel quantiles and the PWLQ grid, best
kept per channel) and, for 1 breakpoint, Lloyd-Max with the same bits of storage per weight code (2^(b+1)
levels: PWLQ-b stores a b-bit code plus a region bit). Since issue 15 it also takes every layer of the
Fashion-MNIST reference models (``fashion_resnet``, ``fashion_mobilenetv2``, trained or loaded from the cache;
skipped with a note when the data is absent). Every scheme carries its all-in bits per weight
(``bpw_*``: codes, region bits and every per-channel scale / offset / breakpoint, from
``prunequant.core.cost.weight_storage_bits``), and PWLQ-b is compared at equal nominal bits (uniform-b) and at
equal code storage (uniform-(b+1)).

Layers whose channels hold no more weights than the scheme has levels are marked ``trivial`` (Lloyd-Max error
~0) and left out of the Lloyd-Max ratio medians; the uniform ratio median uses every layer. Lloyd-Max fits the
sample, so on small fan-ins it sits far below any fixed-shape grid; ``..._median_fanin_ge_8x_levels`` repeats
the Lloyd-Max median over layers with at least 8 weights per level in each channel.

Part 3 (``synthetic_rows``, reported apart from the goals): large-fan-in synthetic layers with Gaussian,
Laplacian and Student-t weights, the regime of the paper's ImageNet nets (max/std 3..12), where the small
digits layers (fan-in 9..576, max/std 1.6..3) say little about how close PWLQ gets to Lloyd-Max.

    .venv/bin/python benchmarks/pwlq_mse.py --quick    # digits CNN + MLP + Fashion-MNIST models, 4 bits
    .venv/bin/python benchmarks/pwlq_mse.py            # all models, 3/4/6 bits
    # the Fashion-MNIST models alone, fully trained ones from the cache, 4 bits:
    .venv/bin/python benchmarks/pwlq_mse.py --quick --fashion-only --fashion-schedule full --cached-only

Every layer also gets a dense-grid check of the breakpoint search (``dense_excess_*``, per channel, p/m over
[0.001, 0.95] at step 2e-4): the worst excess SSE over the dense grid and the share of channels within 0.1%,
for the default search ("auto") and the exact one, summarised per dataset (``*dense_grid_*``).

Last stdout line: {"benchmark": "pwlq_mse", "mc_table": [...], "rows": [...],
"pwlq_over_uniform_mse_4bit_median": ..., "pwlq_over_lloydmax_mse_4bit_median": ..., ...}
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from prunequant.core.cost import weight_storage_bits
from prunequant.models.reference import train_reference
from prunequant.pruning.base import prunable_modules
from prunequant.quantization import (
    expected_error,
    find_breakpoints,
    fold_batchnorm,
    lloyd_max_mse,
    pwlq_level_count,
    pwlq_levels,
    pwlq_quantize,
    quantize_symmetric,
)
from prunequant.quantization.lloyd_max import lloyd_max_references

# notes part A.3, Monte-Carlo table (uniform, PWLQ eq. 3, PWLQ code pw-2, eq. 4)
NOTES_MC = {4: (2.372e-2, 4.63e-3, 4.27e-3, 4.65e-3), 6: (1.343e-3, 2.371e-4, 2.326e-4, 2.372e-4),
            8: (8.21e-5, 1.412e-5, 1.406e-5, 1.413e-5)}


def mc_table(n_samples: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, generator=g, dtype=torch.float64)
    x = x[x.abs() <= 4.0]
    m, p = torch.tensor([4.0], dtype=torch.float64), torch.tensor([[1.392]], dtype=torch.float64)
    rows = []
    for b, notes in NOTES_MC.items():
        s = 2 * 4.0 / (2 ** b - 1)
        uni = float(((torch.round(x / s).clamp(-2 ** (b - 1), 2 ** (b - 1) - 1) * s - x) ** 2).mean())
        paper = float(((pwlq_quantize(x, b, p, m, variant="paper", dim=None) - x) ** 2).mean())
        center = float(((pwlq_quantize(x, b, p, m, variant="b_center", dim=None) - x) ** 2).mean())
        rows.append({"bits": b, "uniform": uni, "uniform_theory": 4 * 16 / (12 * (2 ** b - 1) ** 2),
                     "pwlq_paper": paper, "pwlq_b_center": center,
                     "eq4": float(expected_error(torch.tensor([1.392]), 4.0, b)),
                     "notes": dict(zip(("uniform", "pwlq_paper", "pwlq_b_center", "eq4"), notes)),
                     "pwlq_paper_over_eq4": paper / float(expected_error(torch.tensor([1.392]), 4.0, b))})
    return rows


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).double().mean())


def _bpw(w: torch.Tensor, quant) -> float:
    """All-in bits per weight: code streams + every per-channel state tensor (the project's cost model)."""
    return weight_storage_bits(w, quant) / w.numel()


def layer_rows(model_name: str, model, bits_list, dataset: str = "digits", ns=(1, 2, 3)) -> list[dict]:
    from prunequant.quantization.breakpoints import CAPPED_RANGE
    from prunequant.quantization.pwlq import PWLQWeightQuant
    from prunequant.quantization.uniform import UniformWeightQuant

    rows = []
    for mname, module, pname in prunable_modules(model):
        w = getattr(module, pname).detach()
        K = w[0].numel()
        for b in bits_list:
            row = {"dataset": dataset, "model": model_name, "layer": f"{mname}.{pname}", "shape": list(w.shape),
                   "fan_in": K, "bits": b,
                   "uniform_b": _mse(quantize_symmetric(w, b), w), "uniform_b1": _mse(quantize_symmetric(w, b + 1), w),
                   "bpw_uniform_b": _bpw(w, UniformWeightQuant.from_weight(w, b)),
                   "bpw_uniform_b1": _bpw(w, UniformWeightQuant.from_weight(w, b + 1))}
            m = w.flatten(1).abs().amax(1)
            for n in ns:
                p = find_breakpoints(w, b, "empirical", n)
                row[f"pwlq{n}"] = _mse(pwlq_quantize(w, b, p, m), w)
                row[f"bpw_pwlq{n}"] = _bpw(w, PWLQWeightQuant(b, p.flatten(1), m))
                L = pwlq_level_count(b, n)
                lev = pwlq_levels(b, p.flatten(1), m)
                if n == 1:
                    refs = lloyd_max_references(w, L, b + 1, inits=[lev])
                    row["lloydmax1"], row["lloydmax1_equal_storage"] = refs["same_levels"], refs["same_storage"]
                    row["levels1_equal_storage"] = refs["levels_equal_storage"]
                    row["trivial1_equal_storage"] = K <= refs["levels_equal_storage"]
                else:
                    row[f"lloydmax{n}"], _ = lloyd_max_mse(w, L, inits=[lev])
                row[f"levels{n}"] = L
                row[f"trivial{n}"] = K <= L
                if n == 1:
                    row.update(dense_grid_check(w, b, p, m))
                    row["pwlq1_paper_variant"] = _mse(pwlq_quantize(
                        w, b, find_breakpoints(w, b, "empirical", 1, variant="paper"), m, variant="paper"), w)
                    row["center_fraction"] = float((w.flatten(1).abs() < p[:, :1]).float().mean())
                    row["breakpoint_ratio_mean"] = float((p[:, 0] / m.clamp(min=1e-30)).mean())
                    row["breakpoint_ratio_above_half"] = float((p[:, 0] / m.clamp(min=1e-30) > 0.5).float().mean())
                    pc = find_breakpoints(w, b, "empirical", 1, ratio_range=CAPPED_RANGE)
                    row["pwlq1_capped"] = _mse(pwlq_quantize(w, b, pc, m), w)
            row["pwlq1_gaussian_closed"] = _mse(pwlq_quantize(w, b, find_breakpoints(w, b, "gaussian_closed"), m), w)
            row["max_over_std_median"] = float((m / w.flatten(1).std(1).clamp(min=1e-12)).median()) if K > 1 else None
            rows.append(row)
    return rows


def dense_grid_check(w: torch.Tensor, b: int, p_auto: torch.Tensor, m: torch.Tensor) -> dict:
    """Per-channel check of the breakpoint searches against a dense grid (p/m in [0.001, 0.95], step 2e-4):
    worst excess SSE over the dense grid and the share of channels within 0.1% of it, for the default search
    ("auto") and the exact one; also the layer MSE with the exact search (the best one-breakpoint PWLQ)."""
    from prunequant.quantization.breakpoints import dense_grid_breakpoints

    x = w.flatten(1)
    _, dense = dense_grid_breakpoints(x, b)
    p_exact = find_breakpoints(w, b, "empirical", 1, search="exact")
    out = {"dense_channels": int(x.shape[0])}
    for key, p in (("auto", p_auto), ("exact", p_exact)):
        sse = ((pwlq_quantize(x, b, p.reshape(-1, 1), m) - x).double() ** 2).sum(1)
        excess = sse / dense.clamp(min=1e-30) - 1.0
        excess = torch.where(dense > 0, excess, (sse > 0).double())  # exactly representable channels
        out[f"dense_excess_{key}_max"] = float(excess.max())
        out[f"dense_within_01pct_{key}_share"] = float((excess <= 1e-3).double().mean())
        if key == "exact":
            out["pwlq1_exact"] = float(sse.sum() / x.numel())
    return out


def synthetic_rows(quick: bool, seed: int) -> list[dict]:
    """4-bit ratios on large-fan-in synthetic layers (the paper's regime, max/std 3..12): Gaussian, Laplacian,
    Student-t with 5 and 3 degrees of freedom. Not trained weights; reported separately from the goals."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 576)] if quick else [(64, 576), (128, 1152), (256, 2304)]
    out = []
    for dist in ("gaussian", "laplace", "student_t5", "student_t3"):
        for C, K in shapes:
            z = torch.randn(C, K, generator=g)
            if dist == "laplace":
                u = torch.rand(C, K, generator=g) - 0.5
                z = -torch.sign(u) * torch.log1p(-2 * u.abs())
            elif dist.startswith("student"):
                dof = int(dist[-1])
                z = z / (torch.randn(dof, C, K, generator=g).pow(2).sum(0) / dof).sqrt()
            w = z * torch.exp(0.3 * torch.randn(C, 1, generator=g))
            m = w.abs().amax(1)
            row = {"dist": dist, "shape": [C, K], "bits": 4,
                   "max_over_std_median": float((m / w.std(1)).median()),
                   "uniform_b": _mse(quantize_symmetric(w, 4), w)}
            for n in (1, 2, 3):
                p = find_breakpoints(w, 4, "empirical", n)
                row[f"pwlq{n}"] = _mse(pwlq_quantize(w, 4, p, m), w)
                row[f"lloydmax{n}"], _ = lloyd_max_mse(w, pwlq_level_count(4, n), inits=[pwlq_levels(4, p, m)])
                row[f"pwlq{n}_over_uniform"] = row[f"pwlq{n}"] / row["uniform_b"]
                row[f"pwlq{n}_over_lloydmax"] = row[f"pwlq{n}"] / row[f"lloydmax{n}"]
            out.append(row)
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rows: list[dict], bits: int) -> dict:
    sel = [r for r in rows if r["bits"] == bits]
    out = {f"pwlq_over_uniform_mse_{bits}bit_median": _median([r["pwlq1"] / r["uniform_b"] for r in sel]),
           f"pwlq_over_uniform_b1_mse_{bits}bit_median": _median([r["pwlq1"] / r["uniform_b1"] for r in sel]),
           f"pwlq_over_uniform_equal_storage_mse_{bits}bit_median":
               _median([r["pwlq1"] / r["uniform_b1"] for r in sel]),
           f"pwlq_over_capped_search_mse_{bits}bit_median": _median([r["pwlq1"] / r["pwlq1_capped"] for r in sel]),
           f"pwlq_over_capped_search_mse_{bits}bit_min": min([r["pwlq1"] / r["pwlq1_capped"] for r in sel]),
           f"bpw_pwlq1_{bits}bit_median": _median([r["bpw_pwlq1"] for r in sel]),
           f"bpw_uniform_b_{bits}bit_median": _median([r["bpw_uniform_b"] for r in sel]),
           f"bpw_uniform_b1_{bits}bit_median": _median([r["bpw_uniform_b1"] for r in sel]),
           f"gaussian_closed_over_empirical_{bits}bit_median":
               _median([r["pwlq1_gaussian_closed"] / r["pwlq1"] for r in sel])}
    for n in (1, 2, 3):
        key = "pwlq_over_lloydmax_mse" if n == 1 else f"pwlq{n}_over_lloydmax_mse"
        ok = [r for r in sel if f"pwlq{n}" in r and not r[f"trivial{n}"] and r[f"lloydmax{n}"] > 0]
        out[f"{key}_{bits}bit_median"] = _median([r[f"pwlq{n}"] / r[f"lloydmax{n}"] for r in ok])
        out[f"{key}_{bits}bit_layers"] = len(ok)
        big = [r for r in ok if r["fan_in"] >= 8 * r[f"levels{n}"]]  # well-sampled channels only
        out[f"{key}_{bits}bit_median_fanin_ge_8x_levels"] = _median([r[f"pwlq{n}"] / r[f"lloydmax{n}"] for r in big])
        out[f"{key}_{bits}bit_fanin_ge_8x_levels_layers"] = len(big)
        out[f"pwlq{n}_over_uniform_mse_{bits}bit_median"] = _median([r[f"pwlq{n}"] / r["uniform_b"] for r in sel
                                                                     if f"pwlq{n}" in r])
    ok = [r for r in sel if not r["trivial1_equal_storage"] and r["lloydmax1_equal_storage"] > 0]
    out[f"pwlq_over_lloydmax_equal_storage_mse_{bits}bit_median"] = _median(
        [r["pwlq1"] / r["lloydmax1_equal_storage"] for r in ok])
    # the breakpoint searches against a dense grid, over every channel (weighted by channel count)
    for ds in [None] + sorted({r["dataset"] for r in sel}):
        d = [r for r in sel if ds is None or r["dataset"] == ds]
        tag = "" if ds is None else f"{ds}_"
        n_ch = sum(r["dense_channels"] for r in d)
        for key in ("auto", "exact"):
            out[f"{tag}dense_grid_{key}_worst_excess_{bits}bit"] = max(r[f"dense_excess_{key}_max"] for r in d)
            out[f"{tag}dense_grid_{key}_share_within_01pct_{bits}bit"] = sum(
                r[f"dense_within_01pct_{key}_share"] * r["dense_channels"] for r in d) / max(1, n_ch)
        out[f"{tag}dense_grid_channels_{bits}bit"] = n_ch
    out[f"pwlq_exact_over_uniform_mse_{bits}bit_median"] = _median([r["pwlq1_exact"] / r["uniform_b"] for r in sel])
    out[f"pwlq_exact_over_auto_mse_{bits}bit_median"] = _median([r["pwlq1_exact"] / r["pwlq1"] for r in sel])
    out[f"pwlq_paper_variant_over_uniform_mse_{bits}bit_median"] = _median(
        [r["pwlq1_paper_variant"] / r["uniform_b"] for r in sel])
    lm = [r for r in sel if not r["trivial1"] and r["lloydmax1"] > 0]
    out[f"pwlq_exact_over_lloydmax_mse_{bits}bit_median"] = _median([r["pwlq1_exact"] / r["lloydmax1"] for r in lm])
    # the floor of the uniform-ratio goal: Lloyd-Max with PWLQ's level count (no quantizer with that many levels
    # per channel does better on the sample)
    out[f"lloydmax_over_uniform_mse_{bits}bit_median"] = _median([r["lloydmax1"] / r["uniform_b"] for r in sel])
    out[f"max_over_std_median_{bits}bit_layers"] = _median([r["max_over_std_median"] for r in sel])
    for ds in sorted({r["dataset"] for r in sel}):
        d = [r for r in sel if r["dataset"] == ds]
        out[f"{ds}_pwlq_over_uniform_mse_{bits}bit_median"] = _median([r["pwlq1"] / r["uniform_b"] for r in d])
        out[f"{ds}_pwlq_over_uniform_equal_storage_mse_{bits}bit_median"] = _median(
            [r["pwlq1"] / r["uniform_b1"] for r in d])
        out[f"{ds}_pwlq_over_lloydmax_mse_{bits}bit_median"] = _median(
            [r["pwlq1"] / r["lloydmax1"] for r in d if not r["trivial1"] and r["lloydmax1"] > 0])
    out[f"layers_{bits}bit"] = len(sel)
    return out


def plot(rows: list[dict], bits: int, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sel = [r for r in rows if r["bits"] == bits]
    labels = [f"{r['model']}:{r['layer'].removesuffix('.weight')}" for r in sel]
    fig = Figure(figsize=(max(8, 0.25 * len(sel)), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(sel))
    for key, lab in (("uniform_b1", f"uniform {bits + 1}b"), ("pwlq1", "PWLQ 1 bp"), ("pwlq2", "PWLQ 2 bp"),
                     ("pwlq3", "PWLQ 3 bp"), ("lloydmax1", "Lloyd-Max (levels of PWLQ 1 bp)")):
        ax.plot(xs, [r[key] / r["uniform_b"] if key in r else float("nan") for r in sel],
                "o-" if "pwlq" in key else "s--", ms=3, label=lab)
    ax.axhline(0.17, color="k", lw=0.8, ls=":", label="goal 0.17")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), labels, rotation=90, fontsize=6)
    ax.set_ylabel(f"MSE / uniform {bits}-bit MSE")
    ax.set_title(f"Per-layer weight MSE at {bits} bits (per channel, BN folded)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def glucose_model(seed: int):
    """Train the glucose app's two-LSTM model on its simulated cohort (the app's default recipe, train subjects
    only). Returns (model, note); model is None with the reason when the app cannot provide one."""
    try:
        from dataclasses import asdict

        from prunequant.apps.glucose import GlucoseLSTM, TrainSettings, fit_glucose, simulate_cohort
        from prunequant.apps.glucose.experiments import SimulatedRecipe
        from prunequant.apps.glucose.simulate import SimulatorConfig

        r = SimulatedRecipe()
        cohort = simulate_cohort(range(r.n_train), SimulatorConfig(days=r.train_days, **r.simulator), seed, False)
        x, y, _ = cohort.windows(r.window)
        torch.manual_seed(seed)
        model = GlucoseLSTM("timeseries", in_channels=x.shape[-1], **r.model)
        fit_glucose(model, x, y, settings=TrainSettings(**{**asdict(r.train), "seed": seed, "progress": False}))
        return model.eval(), f"trained on {x.shape[0]} simulated windows (SimulatedRecipe defaults)"
    except Exception as e:  # noqa: BLE001 - the app is optional here; report why it is missing
        return None, f"not available: {type(e).__name__}: {e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits CNN + MLP at 4 bits, 1M Monte-Carlo samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fashion-only", action="store_true",
                    help="only the Fashion-MNIST models (no Monte-Carlo table, digits, glucose or synthetic rows)")
    ap.add_argument("--cached-only", action="store_true",
                    help="never train a Fashion-MNIST reference model: skip one that is not in the cache yet")
    ap.add_argument("--fashion-schedule", default=None, choices=("quick", "full"),
                    help="training schedule of the Fashion-MNIST reference models (cached on disk)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for the JSON and plot")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    schedule = args.fashion_schedule or ("quick" if args.quick else "full")
    mc = [] if args.fashion_only else mc_table(1_000_000 if args.quick else 8_000_000, args.seed)
    for r in mc:
        print(f"MC {r['bits']}b: uniform {r['uniform']:.4g} (notes {r['notes']['uniform']:.4g}), PWLQ eq.3 "
              f"{r['pwlq_paper']:.4g} ({r['notes']['pwlq_paper']:.4g}), b-center {r['pwlq_b_center']:.4g} "
              f"({r['notes']['pwlq_b_center']:.4g}), eq.4 {r['eq4']:.4g}")
    names = ["digits_cnn", "mlp"] if args.quick else ["digits_cnn", "mlp", "resnet_small", "mobilenet_small"]
    names = [] if args.fashion_only else names
    bits_list = [4] if args.quick else [3, 4, 6]
    rows, models = [], {}
    for name in names:
        model, acc = train_reference(name, seed=args.seed)
        fold_batchnorm(model)
        models[name] = acc
        rows += layer_rows(name, model, bits_list)
        print(f"{name}: trained (test acc {acc:.4f}), {len(prunable_modules(model))} weights measured")
    fashion_note = "Fashion-MNIST reference models: " + ("quick schedule (4k-image subset, 2 epochs)"
                                                          if schedule == "quick" else
                                                          "full schedule (all 60k images, 2 epochs)")
    try:
        from prunequant.models.fashion import train_fashion_reference

        for name in ("fashion_resnet", "fashion_mobilenetv2"):
            if args.cached_only:
                from pwlq_accuracy import reference_path

                if not reference_path(name, args.seed, schedule).is_file():
                    fashion_note += f"; {name} seed {args.seed} not in the cache yet: skipped"
                    continue
            model, acc = train_fashion_reference(name, seed=args.seed, schedule=schedule)
            fold_batchnorm(model)
            models[name] = acc
            rows += layer_rows(name, model, bits_list, dataset="fashion_mnist", ns=(1,) if args.quick else (1, 2, 3))
            print(f"{name}: test acc {acc:.4f}, {len(prunable_modules(model))} weights measured")
    except Exception as e:  # noqa: BLE001 - data absent: keep the digits rows, say why
        fashion_note = f"Fashion-MNIST skipped: {type(e).__name__}: {e}"
    print(fashion_note)
    g, g_note = (None, "skipped in --quick / --fashion-only") if args.quick or args.fashion_only else \
        glucose_model(args.seed)
    if g is not None:
        rows += layer_rows("glucose_lstm", g, bits_list)
    print(f"glucose LSTM: {g_note}")
    synthetic = [] if args.fashion_only else synthetic_rows(args.quick, args.seed)
    for r in synthetic:
        print(f"synthetic {r['dist']:10s} {r['shape']} max/std {r['max_over_std_median']:.1f}: PWLQ/uniform "
              + " ".join(f"{r[f'pwlq{n}_over_uniform']:.3f}" for n in (1, 2, 3)) + ", PWLQ/Lloyd-Max "
              + " ".join(f"{r[f'pwlq{n}_over_lloydmax']:.3f}" for n in (1, 2, 3)) + " (1/2/3 breakpoints)")
    summary = {}
    for b in bits_list:
        summary.update(summarize(rows, b))
    s4 = summarize(rows, 4)
    result = {"benchmark": "pwlq_mse", "quick": args.quick, "seed": args.seed, "models": models,
              "glucose_lstm": g_note, "fashion_mnist": fashion_note,
              "bits_note": "bpw_* = all-in bits per weight (codes + region bits + every per-channel fp32 "
                           "scale/offset/breakpoint); equal storage compares PWLQ-b with uniform-(b+1)",
              "variant": "b_center", "breakpoints": "empirical", "mc_table": mc, "rows": rows,
              "synthetic_rows": synthetic,
              **summary,
              "goal_pwlq_le_0.17_uniform": s4["pwlq_over_uniform_mse_4bit_median"] <= 0.17,
              "goal_pwlq_le_1.25_lloydmax": s4["pwlq_over_lloydmax_mse_4bit_median"] <= 1.25,
              "goal_pwlq_lt_1_uniform_equal_storage": s4["pwlq_over_uniform_equal_storage_mse_4bit_median"] < 1.0,
              "goal_lloydmax_ratio_shrinks": s4["pwlq_over_lloydmax_mse_4bit_median"]
              > s4["pwlq2_over_lloydmax_mse_4bit_median"] > s4["pwlq3_over_lloydmax_mse_4bit_median"]
              if s4["pwlq2_over_lloydmax_mse_4bit_median"] is not None
              and s4["pwlq3_over_lloydmax_mse_4bit_median"] is not None else None,
              "note_quick": "--quick: 4 bits, digits CNN + MLP (1/2/3 breakpoints) and the Fashion-MNIST models "
                            "(1 breakpoint only)" if args.quick else None,
              "fashion_only": args.fashion_only,
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"_fashion_{schedule}" if args.fashion_only else ""
    plot(rows, 4, args.out / f"pwlq_mse{tag}_4bit.png")
    (args.out / f"pwlq_mse{tag}.json").write_text(json.dumps(result, indent=1))
    for k, v in summary.items():
        if k.endswith("median") and v is not None or "dense_grid" in k:
            print(f"{k}: {v:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

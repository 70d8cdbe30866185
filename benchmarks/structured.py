"""Structured (channel) pruning vs Torch-Pruning at equal REAL MAC reduction and equal fine-tuning epochs.

For each Fashion-MNIST reference model (ResNet-style and MobileNet-v2-style, >= 1M parameters, trained once and
cached by ``prunequant.models.fashion.train_fashion_reference``) every method starts from the same weights and
removes channels until the MACs of the *shrunk* model (as ``prunequant.analysis.report`` counts them) are
``1 - r`` of the dense model's, r in 0.3 / 0.5 / 0.7, then trains the same number of epochs on the same data:

* ``analytic-channel``: learned gates h(s) = sigmoid((s - β²)/α²) on group norms, 1 gated epoch + 1 fine-tune epoch;
* ``mac-budget-channel``: 2 rounds of (MAC-share allowance, q·std threshold on group norms, removal, 1 epoch);
* ``torch-pruning-l2`` / ``torch-pruning-bnscale``: Torch-Pruning's ``MagnitudePruner`` with L2-magnitude and
  BN-scale importance (uniform per-layer ratio, its default), the ratio bisected to the same real MACs, then
  2 epochs of fine-tuning;
* ``dense``: the reference model.

Latency: ``torch.set_num_threads(--threads)``, eval mode, no grad; medians over interleaved repeats of all variants
(batch 1: mean of 10 calls per repeat; batch 64: one call per repeat). The CPU may be shared: read speedups with
that in mind.

    .venv/bin/python benchmarks/structured.py --quick    # 512 train images, 1+1 epochs, 1k test images (< 5 min
                                                         # with cached reference models)
    .venv/bin/python benchmarks/structured.py            # 20k train images, 2+2 epochs, full test set

Falls back to the 8x8 digits set (and the small digits ResNet / MobileNet) with a note when Fashion-MNIST is absent.
Last stdout line: {"benchmark": "structured", "rows": [{"dataset", "model", "method", "mac_reduction", "accuracy",
"params", "latency_ms_b1", "latency_ms_b64", "speedup_b1", "speedup_b64", ...}], ...}
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunequant import prune_
from prunequant.analysis import report
from prunequant.pruning import AnalyticThresholdConfig, MacBudgetConfig
from prunequant.training import Fit, TrainConfig, Trainer

log = logging.getLogger("benchmarks.structured")


def load_data(quick: bool, seed: int):
    """(dataset name, train loader, test tensors, example input, reference models [(name, model, acc)])."""
    try:
        from prunequant.data import fashion_mnist
        from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference

        ds = fashion_mnist()
    except Exception as e:  # data absent: the digits fallback
        print(f"NOTE: Fashion-MNIST not available ({e}); falling back to the 8x8 digits set and small models",
              file=sys.stderr)
        return load_digits(seed)
    n_train = 512 if quick else 20000
    n_test = 1000 if quick else len(ds.y_test)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.y_train), generator=g)[:n_train]
    train = DataLoader(TensorDataset(ds.x_train[idx], ds.y_train[idx]), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    test = (ds.x_test[:n_test], ds.y_test[:n_test])
    models = []
    for name in ("fashion_resnet", "fashion_mobilenetv2"):
        t0 = time.time()
        m, _ = train_fashion_reference(name, seed=seed, schedule="quick", data=ds)
        models.append((name, m.eval()))
        log.info("reference %s ready in %.0fs", name, time.time() - t0)
    return "fashion-mnist", train, test, torch.zeros(1, 1, 28, 28), models, evaluate_accuracy


def load_digits(seed: int):
    from prunequant.data import digits_loaders
    from prunequant.models.reference import train_reference

    train, _, test_loader = digits_loaders(seed=seed)[:3]
    xs, ys = zip(*list(test_loader))
    test = (torch.cat(xs), torch.cat(ys))
    models = [(n, train_reference(n, seed=seed)[0].eval()) for n in ("resnet_small", "mobilenet_small")]

    @torch.no_grad()
    def acc(model, x, y):
        model.eval()
        return float((model(x).argmax(1) == y).float().mean())

    return "digits", train, test, torch.zeros(1, 1, 8, 8), models, acc


def real_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    t = report(model, x).total
    return t.macs, t.params


def finetune(model: nn.Module, train, epochs: int, lr: float, seed: int) -> None:
    if epochs > 0:
        Trainer(model, TrainConfig(epochs=epochs, lr=lr, seed=seed, progress=False)).fit(train)


def tp_prune(model: nn.Module, x: torch.Tensor, target: float, importance: str, dense_macs: int, train) -> nn.Module:
    """Torch-Pruning MagnitudePruner with the per-layer ratio bisected to the real MAC target (within 1 pt)."""
    import torch_pruning as tp

    def run(ratio: float) -> nn.Module:
        m = copy.deepcopy(model)
        imp = tp.importance.MagnitudeImportance(p=2) if importance == "l2" else tp.importance.BNScaleImportance()
        last = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1:]
        pruner = tp.pruner.MagnitudePruner(m, x, importance=imp, pruning_ratio=ratio, ignored_layers=last)
        pruner.step()
        return m

    lo, hi, best = 0.0, 0.95, None
    mid = 1.0 - (1.0 - target) ** 0.5  # uniform ratio r removes about 1 - (1 - r)^2 of the MACs
    for _ in range(10):
        m = run(mid)
        red = 1 - real_macs(m, x)[0] / dense_macs
        if best is None or abs(red - target) < abs(best[1] - target):
            best = (m, red)
        if abs(red - target) <= 0.005:
            break
        if red < target:
            lo = mid
        else:
            hi = mid
        mid = 0.5 * (lo + hi)
    return best[0]


@torch.no_grad()
def latencies(variants: list[nn.Module], x1: torch.Tensor, x64: torch.Tensor,
              repeats: int) -> list[tuple[float, float]]:
    for m in variants:
        m.eval()
        for _ in range(2):
            m(x1), m(x64)
    t1 = [[] for _ in variants]
    t64 = [[] for _ in variants]
    for _ in range(repeats):  # interleaved: every variant once per repeat
        for i, m in enumerate(variants):
            s = time.perf_counter()
            for _ in range(10):
                m(x1)
            t1[i].append((time.perf_counter() - s) / 10 * 1e3)
            s = time.perf_counter()
            m(x64)
            t64[i].append((time.perf_counter() - s) * 1e3)
    return [(statistics.median(a), statistics.median(b)) for a, b in zip(t1, t64)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reductions", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    ap.add_argument("--models", nargs="*", default=None, help="subset of the reference model names")
    ap.add_argument("--out", default=None, help="also write the JSON here (rewritten after each model)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()
    dataset, train, (xt, yt), x, models, evaluate_acc = load_data(args.quick, args.seed)
    gate_epochs, ft_epochs = (1, 1) if args.quick else (2, 2)
    lr = 1e-3
    repeats = 5 if args.quick else 15
    rows = []
    for name, dense in models:
        if args.models and name not in args.models:
            continue
        dense_macs, dense_params = real_macs(dense, x)
        variants = [("dense", 0.0, dense, 0.0)]
        for r in args.reductions:
            t0 = time.time()
            m = copy.deepcopy(dense)
            cfg = AnalyticThresholdConfig(granularity="channel", mac_reduction=r, epochs=gate_epochs,
                                          finetune_epochs=ft_epochs)
            prune_(m, cfg, fit=Fit(train, train_config=TrainConfig(lr=lr, seed=args.seed, progress=False)),
                   example_input=x)
            variants.append(("analytic-channel", r, m, time.time() - t0))
            t0 = time.time()
            m = copy.deepcopy(dense)
            cfg = MacBudgetConfig(granularity="channel", mac_reduction=r, rounds=gate_epochs + ft_epochs,
                                  retrain_epochs=1, retrain_lr=lr)
            prune_(m, cfg, fit=Fit(train, train_config=TrainConfig(lr=lr, seed=args.seed, progress=False)),
                   example_input=x)
            variants.append(("mac-budget-channel", r, m, time.time() - t0))
            for imp in ("l2", "bnscale"):
                t0 = time.time()
                m = tp_prune(dense, x, r, imp, dense_macs, train)
                finetune(m, train, gate_epochs + ft_epochs, lr, args.seed)
                variants.append((f"torch-pruning-{imp}", r, m, time.time() - t0))
            log.info("%s r=%.1f done (%.0fs since start)", name, r, time.time() - t_start)
        lat = latencies([v[2] for v in variants], x, x.repeat(64, 1, 1, 1), repeats)
        b1_dense, b64_dense = lat[0]
        for (method, r, m, secs), (b1, b64) in zip(variants, lat):
            macs, params = real_macs(m, x)
            rows.append({"dataset": dataset, "model": name, "method": method, "mac_reduction": r,
                         "mac_reduction_measured": round(1 - macs / dense_macs, 4),
                         "accuracy": round(evaluate_acc(m, xt, yt), 4), "params": params, "macs": macs,
                         "latency_ms_b1": round(b1, 3), "latency_ms_b64": round(b64, 2),
                         "speedup_b1": round(b1_dense / b1, 3), "speedup_b64": round(b64_dense / b64, 3),
                         "prune_and_train_s": round(secs, 1)})
            log.info("%-20s %-22s r=%.1f acc=%.4f params=%d MACs -%.1f%% b1=%.2fms (x%.2f) b64=%.1fms (x%.2f)",
                     name, method, r, rows[-1]["accuracy"], params, 100 * rows[-1]["mac_reduction_measured"],
                     b1, rows[-1]["speedup_b1"], b64, rows[-1]["speedup_b64"])
        if args.out:
            from pathlib import Path

            Path(args.out).write_text(json.dumps({"benchmark": "structured", "partial": True, "rows": rows}))
    out = {"benchmark": "structured", "quick": args.quick, "threads": args.threads, "seed": args.seed,
           "epochs": {"gated_or_round": gate_epochs, "finetune": ft_epochs, "total": gate_epochs + ft_epochs},
           "seconds": round(time.time() - t_start, 1), "rows": rows}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""Structured (channel) pruning vs Torch-Pruning at equal REAL MAC reduction and equal fine-tuning epochs.

For each Fashion-MNIST reference model (ResNet-style and MobileNet-v2-style, >= 1M parameters, trained once and
cached by ``prunequant.models.fashion.train_fashion_reference``; ``--schedule full``: all 60k images, the reference
models of the docs) every method starts from the same weights and removes channels until the MACs of the *shrunk*
model (as ``prunequant.analysis.report`` counts them) are ``1 - r`` of the dense model's, r in 0.3 / 0.5 / 0.7,
then trains the same number of epochs (``--epochs``, default 2) on the same ``--train-images`` images:

* ``analytic-channel``: learned gates h(s) = sigmoid((s - β²)/α²) on group norms, epochs/2 gated + the rest
  fine-tuning of the shrunk model;
* ``mac-budget-channel``: ``--epochs`` rounds of (MAC-share allowance / group sensitivity, q·std threshold on group
  norms, removal, 1 epoch);
* ``torch-pruning-l2`` / ``torch-pruning-bnscale``: Torch-Pruning's ``MagnitudePruner`` with L2-magnitude and
  BN-scale importance (uniform per-layer ratio, its default), the ratio bisected to the same real MACs, then
  ``--epochs`` epochs of fine-tuning;
* ``dense``: the reference model.

Every pruned model gets the same BatchNorm re-estimation after removal (1,024 training images, forward only): part
of prunequant's recipes, applied to the Torch-Pruning models too (``--no-tp-bn-recal`` to run them as shipped).

Latency: ``torch.set_num_threads(--threads)``, eval mode, no grad; every variant once per repeat, interleaved
(batch 1: mean of 10 calls per repeat; batch 64: one call per repeat); ``latency_ms_*`` are medians over repeats,
``speedup_*`` the median over repeats of (dense time / variant time) *within the same repeat*, which cancels
most of the drift of a shared CPU. The machine's load average is recorded: read absolute times with it in mind.

    .venv/bin/python benchmarks/structured.py --quick    # quick models, 512 train images, 2 epochs, 1k test images
    .venv/bin/python benchmarks/structured.py --schedule full --models fashion_resnet --threads 1 \
        --train-images 2048 --epochs 2 --test-images 5000 --out out.json

Falls back to the 8x8 digits set (and the small digits ResNet / MobileNet) with a note when Fashion-MNIST is absent.
Last stdout line: {"benchmark": "structured", "rows": [{"dataset", "model", "method", "mac_reduction", "accuracy",
"params", "latency_ms_b1", "latency_ms_b64", "speedup_b1", "speedup_b64", ...}], ...}
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunequant import prune_
from prunequant.analysis import report
from prunequant.pruning import AnalyticThresholdConfig, MacBudgetConfig
from prunequant.training import Fit, TrainConfig, Trainer

log = logging.getLogger("benchmarks.structured")


def _cached_reference(name: str, seed: int, schedule: str) -> bool:
    """True if the reference model is in the disk cache (the key of ``train_fashion_reference``)."""
    from prunequant.models.fashion import SCHEDULES, cache_dir

    key = json.dumps({"name": name, "width": 1.0, "seed": seed, **SCHEDULES[schedule]}, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    return (cache_dir(None) / "fashion" / f"{name}-w1-s{seed}-{tag}.safetensors").is_file()


def load_data(args):
    """(dataset name, train loader, test tensors, example input, reference models [(name, model)], accuracy fn)."""
    try:
        from prunequant.data import fashion_mnist
        from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference

        ds = fashion_mnist()
    except Exception as e:  # data absent: the digits fallback
        print(f"NOTE: Fashion-MNIST not available ({e}); falling back to the 8x8 digits set and small models",
              file=sys.stderr)
        return load_digits(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(ds.y_train), generator=g)[:args.train_images]
    train = DataLoader(TensorDataset(ds.x_train[idx], ds.y_train[idx]), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(args.seed))
    n_test = min(args.test_images or len(ds.y_test), len(ds.y_test))
    test = (ds.x_test[:n_test], ds.y_test[:n_test])
    models = []
    for name in ("fashion_resnet", "fashion_mobilenetv2"):
        if args.models and name not in args.models:
            continue
        if args.schedule == "full" and not _cached_reference(name, args.seed, "full"):
            if not args.wait_for_models:
                raise SystemExit(f"{name} (seed {args.seed}, full schedule) is not cached yet; train it with "
                                 "train_fashion_reference(name, seed, schedule='full') or pass --wait-for-models")
            while not _cached_reference(name, args.seed, "full"):
                log.info("waiting for the full-schedule %s (seed %d) ...", name, args.seed)
                time.sleep(60)
        m, ref_acc = train_fashion_reference(name, seed=args.seed, schedule=args.schedule, data=ds)
        models.append((name, m.eval()))
        log.info("reference %s (%s schedule): cached test accuracy %.4f", name, args.schedule, ref_acc)
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


def bn_recal(model: nn.Module, train, samples: int = 1024) -> None:
    """The BatchNorm re-estimation prunequant's recipes run after removal (same images, forward only)."""
    from prunequant.pruning.structured import calibration_inputs, recalibrate_batchnorm_

    recalibrate_batchnorm_(model, calibration_inputs(train, samples))


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
def latencies(variants: list[nn.Module], x1: torch.Tensor, x64: torch.Tensor, repeats: int) -> list[dict]:
    """Interleaved timing; per variant: median ms at batch 1 / 64 and the median per-repeat speedup over
    variant 0 (dense)."""
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
    out = []
    for a, b in zip(t1, t64):
        out.append({"b1": statistics.median(a), "b64": statistics.median(b),
                     "speedup_b1": statistics.median(d / v for d, v in zip(t1[0], a)),
                     "speedup_b64": statistics.median(d / v for d, v in zip(t64[0], b))})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="quick reference models, 512 train / 1k test images")
    ap.add_argument("--schedule", choices=("quick", "full"), default=None,
                    help="reference models (default: quick with --quick, else full)")
    ap.add_argument("--wait-for-models", action="store_true", help="wait until the full reference models are cached")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reductions", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    ap.add_argument("--models", nargs="*", default=None, help="subset of the reference model names")
    ap.add_argument("--methods", nargs="*", default=None, help="subset of the pruning methods")
    ap.add_argument("--train-images", type=int, default=None, help="fine-tuning images (default 512 / 20000)")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs per method (all methods the same)")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of every training phase (all methods)")
    ap.add_argument("--test-images", type=int, default=None, help="test images (default 1000 quick, else all)")
    ap.add_argument("--repeats", type=int, default=None, help="latency repeats (default 5 quick, else 15)")
    ap.add_argument("--no-tp-bn-recal", action="store_true", help="run Torch-Pruning without BN re-estimation")
    ap.add_argument("--out", default=None, help="also write the JSON here (rewritten after each variant)")
    args = ap.parse_args(argv)
    args.schedule = args.schedule or ("quick" if args.quick else "full")
    args.train_images = args.train_images or (512 if args.quick else 20000)
    args.test_images = args.test_images or (1000 if args.quick else None)
    repeats = args.repeats or (5 if args.quick else 15)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()
    load_start = os.getloadavg()
    dataset, train, (xt, yt), x, models, evaluate_acc = load_data(args)
    total = max(1, args.epochs)
    gate_epochs, ft_epochs = (total + 1) // 2, total // 2
    lr = args.lr
    methods = args.methods or ["analytic-channel", "mac-budget-channel", "torch-pruning-l2", "torch-pruning-bnscale"]
    rows: list[dict] = []
    meta = {"benchmark": "structured", "quick": args.quick, "schedule": args.schedule, "threads": args.threads,
            "seed": args.seed, "train_images": len(train.dataset), "test_images": int(len(yt)),
            "epochs": {"analytic": [gate_epochs, ft_epochs], "mac_budget_rounds": total, "torch_pruning": total},
            "lr": lr, "tp_bn_recal": not args.no_tp_bn_recal, "latency_repeats": repeats}

    def dump(partial: bool) -> dict:
        out = {**meta, "seconds": round(time.time() - t_start, 1), "load_average_start": list(load_start),
               "load_average_end": list(os.getloadavg()), "partial": partial, "rows": rows}
        if args.out:
            tmp = Path(args.out).with_suffix(".tmp")
            tmp.write_text(json.dumps(out))
            os.replace(tmp, args.out)
        return out

    def fit():
        return Fit(train, train_config=TrainConfig(lr=lr, seed=args.seed, progress=False))

    for name, dense in models:
        dense_macs, dense_params = real_macs(dense, x)
        variants = [("dense", 0.0, dense, 0.0)]
        rows.append({"dataset": dataset, "model": name, "method": "dense", "mac_reduction": 0.0,
                     "accuracy": round(evaluate_acc(dense, xt, yt), 4), "params": dense_params, "macs": dense_macs})
        log.info("%s dense: accuracy %.4f on %d test images", name, rows[-1]["accuracy"], len(yt))
        for r in args.reductions:
            for method in methods:
                if getattr(train, "generator", None) is not None:  # every method: the same batch order
                    train.generator.manual_seed(args.seed)
                t0 = time.time()
                if method == "analytic-channel":
                    m = copy.deepcopy(dense)
                    cfg = AnalyticThresholdConfig(granularity="channel", mac_reduction=r, epochs=gate_epochs,
                                                  finetune_epochs=ft_epochs)
                    prune_(m, cfg, fit=fit(), example_input=x)
                elif method == "mac-budget-channel":
                    m = copy.deepcopy(dense)
                    cfg = MacBudgetConfig(granularity="channel", mac_reduction=r, rounds=total, retrain_epochs=1,
                                          retrain_lr=lr)
                    prune_(m, cfg, fit=fit(), example_input=x)
                elif method.startswith("torch-pruning-"):
                    m = tp_prune(dense, x, r, method.rpartition("-")[2], dense_macs, train)
                    if not args.no_tp_bn_recal:
                        bn_recal(m, train)
                    finetune(m, train, total, lr, args.seed)
                else:
                    raise SystemExit(f"unknown method {method!r}")
                secs = time.time() - t0
                variants.append((method, r, m, secs))
                macs, params = real_macs(m, x)
                rows.append({"dataset": dataset, "model": name, "method": method, "mac_reduction": r,
                             "mac_reduction_measured": round(1 - macs / dense_macs, 4),
                             "accuracy": round(evaluate_acc(m, xt, yt), 4), "params": params, "macs": macs,
                             "prune_and_train_s": round(secs, 1)})
                log.info("%-20s %-22s r=%.1f acc=%.4f params=%d MACs -%.1f%% (%.0fs; %.0fs since start)", name,
                         method, r, rows[-1]["accuracy"], params, 100 * rows[-1]["mac_reduction_measured"], secs,
                         time.time() - t_start)
                dump(partial=True)
        lat = latencies([v[2] for v in variants], x, x.repeat(64, 1, 1, 1), repeats)
        model_rows = [row for row in rows if row["model"] == name]
        for row, lt in zip(model_rows, lat):
            row.update({"latency_ms_b1": round(lt["b1"], 3), "latency_ms_b64": round(lt["b64"], 2),
                        "speedup_b1": round(lt["speedup_b1"], 3), "speedup_b64": round(lt["speedup_b64"], 3)})
            log.info("%-20s %-22s r=%.1f b1=%.2fms (x%.2f) b64=%.1fms (x%.2f)", name, row["method"],
                     row["mac_reduction"], lt["b1"], lt["speedup_b1"], lt["b64"], lt["speedup_b64"])
        dump(partial=True)
    out = dump(partial=False)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

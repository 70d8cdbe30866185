"""Joint pruning + soft mixed-precision QAT vs the two baselines: metric against compressed size.

Models: the digits CNN (accuracy) and the glucose app's two-LSTM model on simulated wearable NIR windows (RMSE in
mg/dL). For every seed one reference model is trained; every method starts from that same model and gets the same
total number of training epochs, the same feature-map bits and the same size target (bytes as
:func:`prunequant.analysis.report` counts them, fp32 bytes / ratio):

* ``joint``: ``JointConfig(target_size_bytes=T, target_abits=A)``: soft phase + hardening + fine-tune;
* ``qat-after-magnitude``: global magnitude pruning to the sparsity that meets T at ``b`` bits, then fixed-bit QAT;
* ``analytic-then-pwlq``: analytic-threshold pruning to that sparsity (+ fine-tune), then PWLQ PTQ at ``b`` bits.

Sizes, bits and sparsity are read from the report of the finalized model (what was really reached, not the target).

    .venv/bin/python benchmarks/joint.py --quick     # digits 3 seeds + glucose 1 seed, short schedules (< 3 min)
                                                     # + Fashion-MNIST ResNet/MobileNet-v2, 1 seed, 64x only
    .venv/bin/python benchmarks/joint.py             # 3 seeds each, full schedules, Fashion-MNIST at 16/32/64x
    .venv/bin/python benchmarks/joint.py --models fashion_resnet fashion_mobilenetv2 --select-candidates

Fashion-MNIST rows (dataset "fashion-mnist") add the methods ``uniform-2bit`` (every layer 2-bit weights,
magnitude pruning only where the size target needs it) and ``hawq-mixed`` (a HAWQ-v2/v3-style peer written from
the papers: Hutchinson Hessian traces, per-layer (sparsity, bits) options priced by Tr(H)/n · ||Q(W) − W||² and
chosen under the byte budget, then QAT; see :func:`hawq_mixed_`), ``bops_ratio`` (fp32 BOPs = MACs x 32 x 32 over
the method's effective-MAC BOPs) and a plot of the joint per-layer allocation next to each layer's one-at-a-time
2-bit sensitivity and the hawq-mixed Hessian traces (``<model>_allocation.png``). Joint candidate bits can be
chosen on a validation split (the first half of the test images; the reported test metric uses the disjoint
second half). The issue-16 run (CPU-bound: 2 shared cores):

    .venv/bin/python benchmarks/joint.py --models fashion_resnet --fashion-schedule full --fashion-ratios 32 64 \
        --fashion-train 1000 --fashion-batch 32 --fashion-epochs 2 --fashion-val 2000 --fashion-test 3000 \
        --select-candidates --wait-for-references 20 --finish-by 10:44 --out benchmarks/out/joint_fashion

Seeds can run as separate processes (one per core) and be merged; a later process reuses the candidate set the
first one chose on its validation split (``--joint-candidates``, recorded as given, not selected)::

    .venv/bin/python benchmarks/joint.py --models fashion_mobilenetv2 --fashion-seed-list 1 \
        --joint-candidates w2-3-4-6-8/a2-3-4-6-8 ... --out benchmarks/out/joint_s1
    .venv/bin/python benchmarks/joint.py --merge benchmarks/out/joint_s0/joint.json benchmarks/out/joint_s1/joint.json

``--finish-by HH:MM`` (UTC) starts no run expected to end later and still writes the results so far;
``joint_partial.json`` is rewritten after every run; a method that raises is recorded with its error.

Last stdout line: {"benchmark": "joint", "rows": [{"model", "method", "size_bytes", "compression_ratio",
"avg_wbits", "avg_abits", "sparsity", "metric", "metric_name", "loss_vs_fp32", ...}], "runs": [...],
"summary": {...}} (rows: means over seeds; runs: every seed; loss_vs_fp32: accuracy points lost, or RMSE
increase).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch import nn

from prunequant.analysis import report
from prunequant.api import prune_quantize_
from prunequant.data import digits_loaders
from prunequant.joint import AnalyticPWLQConfig, JointConfig, MagnitudeQATConfig
from prunequant.models.reference import train_reference
from prunequant.storage import atomic_write_bytes
from prunequant.training import accuracy, evaluate

X_DIGITS = torch.zeros(1, 1, 8, 8)
METHODS = ("joint", "qat-after-magnitude", "analytic-then-pwlq", "uniform-2bit", "hawq-mixed")
BASELINES = METHODS[1:]


def model_stats(model, example) -> dict:
    """Size, ratio and bit/sparsity averages of the layers with MACs, from the report."""
    rep = report(model, example)
    rows = [r for r in rep.rows if r.macs > 0]
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    return {"size_bytes": rep.total.bytes, "compression_ratio": rep.compression_ratio,
            "file_overhead_bytes": rep.total.bytes - sum(r.bytes for r in rep.rows),
            "avg_wbits": sum(r.weight_bits * r.params for r in rows) / params,
            "avg_abits": sum(r.act_bits * r.macs for r in rows) / macs,
            "sparsity": 1.0 - sum(r.nonzeros for r in rows) / params,
            "bops": sum(r.effective_macs * r.weight_bits * r.act_bits for r in rows),
            "bops_fp32": sum(r.macs * 32 * 32 for r in rows)}


@dataclass
class Task:
    """One model + data set: the fp32 model per seed, loaders, loss, metrics and what every method shares."""

    name: str
    fp32: Callable[[int], nn.Module]            # trained reference model for a seed (fresh copy)
    loaders: Callable[[int], tuple]             # (train, val) DataLoaders for a seed
    score: Callable[[nn.Module], float]         # reported test metric
    metric_name: str
    higher_is_better: bool
    example: torch.Tensor
    abits: int
    ratios: list[float]
    epochs: tuple[int, int]
    seeds: int
    loss_fn: Callable = F.cross_entropy
    train_metric: Callable = accuracy
    exclude: tuple[str, ...] | None = None
    dataset: str = "digits"
    methods: tuple[str, ...] = METHODS[:3]
    joint_overrides: dict | None = None     # JointConfig fields chosen on the validation split
    val_score: Callable | None = None       # metric on the validation split (candidate selection only)
    sensitivity: Callable | None = None     # per-layer sensitivity for the allocation plot
    seed_list: list[int] | None = None      # seeds to run (default: range(seeds))
    reuse: dict = field(default_factory=dict)  # (seed, ratio, method) -> a run already made (candidate selection)


def digits_task(args) -> Task:
    def fp32(seed):
        return train_reference("digits_cnn", seed=seed)[0]

    def loaders(seed):
        return digits_loaders(batch_size=64, seed=seed)[:2]

    test = digits_loaders(batch_size=256, seed=0)[2]  # the test split does not depend on the seed
    return Task("digits_cnn", fp32, loaders, lambda m: evaluate(m, test), "accuracy", True, X_DIGITS, args.abits,
                args.ratios, (10, 5) if args.quick else (30, 15), args.seeds)


def glucose_task(args) -> Task:
    """The glucose app's two-LSTM model on simulated wearable NIR windows (the app's simulated recipe, scaled
    down: 16/4/8 subjects, half a day each). The PCA-initialised input projection and the 1-output head are left
    in fp32 by every method (the app's own compression does the same)."""
    from prunequant.apps.glucose.metrics import rmse
    from prunequant.apps.glucose.model import GlucoseLSTM
    from prunequant.apps.glucose.pipeline import (
        TrainSettings,
        fit_glucose,
        make_loader,
        neg_rmse,
        predict,
        regression_loss,
    )
    from prunequant.apps.glucose.simulate import SimulatorConfig, simulate_cohort

    sim = SimulatorConfig(days=0.5, wl_step=40.0)
    xtr, ytr, _ = simulate_cohort(range(0, 16), sim, 0).windows(6)
    xva, yva, _ = simulate_cohort(range(16, 20), sim, 0).windows(6)
    xte, yte, _ = simulate_cohort(range(100_000, 100_008), sim, 0).windows(6)
    cache: dict[int, nn.Module] = {}

    def fp32(seed):
        if seed not in cache:
            torch.manual_seed(seed)
            m = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], snv=True, project=24, hidden1=48, hidden2=24)
            fit_glucose(m, xtr, ytr, xva, yva, TrainSettings(epochs=10 if args.quick else 30, lr=3e-3,
                                                             batch_size=128, seed=seed, progress=False))
            cache[seed] = m
        return copy.deepcopy(cache[seed])

    def loaders(seed):
        torch.manual_seed(seed)
        return make_loader(xtr, ytr, 128, shuffle=True), make_loader(xva, yva, 1024)

    y_std = float(np.std(ytr))
    return Task("glucose_lstm", fp32, loaders, lambda m: rmse(yte, predict(m, xte)), "rmse_mgdl", False,
                torch.zeros(1, 6, xtr.shape[-1]), 8, args.glucose_ratios,
                (4, 2) if args.quick else (20, 10), 1 if args.quick else args.glucose_seeds,
                loss_fn=regression_loss("mse", y_std), train_metric=neg_rmse, exclude=("proj", "head"),
                dataset="simulated")


def fashion_task(args, name: str) -> Task:
    """A Fashion-MNIST reference model (ResNet-style or MobileNet-v2-style, >= 1M parameters) from
    :func:`prunequant.models.fashion.train_fashion_reference` (cached by seed). Compression training uses a seeded
    subset of the 60k training images; the 10k test images are split in two disjoint halves: the first half is
    the validation split (candidate-bit selection only), the second half the reported test split."""
    from prunequant.data.fashion_mnist import fashion_mnist
    from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference

    ds = fashion_mnist()
    n_train, n_val, n_test = (2000, 1000, 2000) if args.quick else (args.fashion_train, args.fashion_val,
                                                                      args.fashion_test)
    xval, yval = ds.x_test[:n_val], ds.y_test[:n_val]
    xte, yte = ds.x_test[5000:5000 + n_test], ds.y_test[5000:5000 + n_test]
    schedule = "quick" if args.quick else args.fashion_schedule
    cache: dict[int, nn.Module] = {}

    def fp32(seed):
        if seed not in cache:
            if args.wait_for_references:
                _wait_for_reference(name, seed, schedule, args.wait_for_references, args)
            cache[seed] = train_fashion_reference(name, seed=seed, schedule=schedule, data=ds, threads=None)[0]
        return copy.deepcopy(cache[seed])

    def loaders(seed):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds.y_train), generator=g)[:n_train]
        train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ds.x_train[idx], ds.y_train[idx]),
                                            batch_size=64 if args.quick else args.fashion_batch, shuffle=True,
                                            generator=g)
        val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xval[:500], yval[:500]), batch_size=500)
        return train, val

    def sensitivity(model):
        return layer_sensitivity(model, lambda m: evaluate_accuracy(m, xval[:500], yval[:500]))

    return Task(name.removeprefix("fashion_"), fp32, loaders, lambda m: evaluate_accuracy(m, xte, yte), "accuracy",
                True, torch.zeros(1, 1, 28, 28), args.abits, [max(args.fashion_ratios)] if args.quick else
                args.fashion_ratios,
                (2, 1) if args.quick else (args.fashion_epochs, args.fashion_epochs // 2),
                1 if args.quick else args.fashion_seeds, dataset="fashion-mnist", methods=METHODS,
                val_score=lambda m: evaluate_accuracy(m, xval, yval), sensitivity=sensitivity)


def _wait_for_reference(name: str, seed: int, schedule: str, minutes: float, finish_by=None) -> None:
    """Wait (up to ``minutes``) for a reference model another process is training to appear in the cache (the
    file is written atomically), instead of training it a second time here."""
    import hashlib

    from prunequant.models.fashion import SCHEDULES, cache_dir

    key = json.dumps({"name": name, "width": 1.0, "seed": seed, **SCHEDULES[schedule]}, sort_keys=True)
    path = cache_dir() / "fashion" / f"{name}-w1-s{seed}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.safetensors"
    t0 = time.time()
    while not path.is_file():
        if time.time() - t0 > minutes * 60 or (finish_by is not None and _past(finish_by, 0.0)):
            raise TimeoutError(f"reference model {path} did not appear in time")
        time.sleep(20)


@torch.no_grad()
def layer_sensitivity(model: nn.Module, score: Callable[[nn.Module], float], bits: int = 2) -> dict[str, float]:
    """Accuracy points lost when one layer alone has its weights rounded to ``bits``-bit per-channel symmetric
    uniform levels (the others fp32): the classic one-at-a-time sensitivity scan (as AIMET/NNCF report it)."""
    from prunequant.pruning.base import prunable_modules

    base = score(model)
    out = {}
    qmax = 2 ** (bits - 1) - 1
    for name, module, pname in prunable_modules(model):
        w = getattr(module, pname)
        saved = w.detach().clone()
        flat = saved.reshape(saved.shape[0], -1)
        scale = flat.abs().amax(1, keepdim=True).clamp_min(1e-12) / qmax
        w.data.copy_((torch.round(flat / scale).clamp(-qmax, qmax) * scale).reshape(saved.shape))
        out[f"{name}.{pname}"] = (base - score(model)) * 100
        w.data.copy_(saved)
    return out


def select_candidates(task: Task, args) -> dict:
    """Choose the joint candidate bit sets on the validation split only (seed 0, the highest ratio): each entry of
    CANDIDATE_SETS is run once and the best validation accuracy wins. The test metric of each run is computed
    too but never used for the choice; the chosen set's run is kept and reported as the seed-0 joint row at that
    ratio (same seed, config and data: rerunning it would give the same model)."""
    fp = task.fp32(0)
    target = model_stats(fp, task.example)["size_bytes"] / max(task.ratios)
    best, scores, runs = None, {}, {}
    for key, overrides in CANDIDATE_SETS.items():
        t = time.perf_counter()
        res = run_method(task, "joint", 0, target, args, overrides={**overrides, **dict(args.joint_set)},
                         with_val=True)
        res["seconds"] = time.perf_counter() - t
        runs[key] = res
        scores[key] = res["val_metric"]
        if best is None or res["val_metric"] > scores[best]:
            best = key
    task.reuse[(0, max(task.ratios), "joint")] = runs[best]
    return {"chosen": best, "val_scores": scores, "overrides": CANDIDATE_SETS[best]}




def parse_setting(text: str) -> tuple[str, object]:
    """``"tau_schedule=whole"`` -> ``("tau_schedule", "whole")``; ``"logit_lr=0.01"`` -> ``("logit_lr", 0.01)``.
    The field must exist on JointConfig."""
    import argparse
    import dataclasses

    field_name, sep, raw = text.partition("=")
    names = {f.name for f in dataclasses.fields(JointConfig)}
    if not sep or field_name not in names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=VALUE with FIELD a JointConfig field")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return field_name, tuple(value) if isinstance(value, list) else value


def parse_candidates(text: str) -> tuple[str, dict]:
    """``"w2-3-4/a4-8"`` -> ``("w2-3-4/a4-8", {"weight_bits": (2, 3, 4), "act_bits": (4, 8)})``; further
    ``/FIELD=VALUE`` parts are JointConfig settings (``"w2-3/a4/tau_schedule=whole"``), as in CANDIDATE_SETS."""
    import argparse

    try:
        w, a, *extra = text.split("/")
        if w[0] != "w" or a[0] != "a":
            raise ValueError
        wb, ab = (tuple(int(b) for b in part[1:].split("-")) for part in (w, a))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"candidate set {text!r}: expected e.g. 'w2-3-4-6-8/a2-3-4-6-8'") from None
    if not all(1 <= b <= 16 for b in wb + ab):
        raise argparse.ArgumentTypeError(f"candidate set {text!r}: bits must lie in 1..16")
    return text, {"weight_bits": wb, "act_bits": ab, **dict(parse_setting(e) for e in extra)}


# joint settings the validation split chooses among (--select-candidates); JointConfig's default first. A key is
# what parse_candidates() reads: weight bits / feature-map bits [/ JointConfig settings]
CANDIDATE_SETS = {key: parse_candidates(key)[1] for key in (
    "w3-4-6-8/a2-3-4-6-8",
    "w2-3-4-6-8/a2-3-4-6-8",
    # the same candidates with τ annealed over the whole soft phase (the default holds τ = 1 while the size ramps)
    "w2-3-4-6-8/a2-3-4-6-8/tau_schedule=whole",
)}

# ---------------------------------------------------------------------------------------------------------------
# hawq-mixed: a HAWQ-style mixed-precision peer (benchmark only), written from the papers' idea, not their code:
# HAWQ-v2 (Dong et al., NeurIPS 2020): per-layer average Hessian trace Tr(H_i)/n_i by Hutchinson's estimator;
# HAWQ-v3 (Yao et al., ICML 2021): per-layer bit allocation minimising Σ_i Tr(H_i)/n_i · ||Q(W_i) − W_i||²
# under a size / BOPs budget (an integer linear program there; here the same multiple-choice knapsack solved
# by Lagrangian bisection plus a greedy fill). Pruning enters as one more option per layer (magnitude pruning to
# a per-layer sparsity before quantizing, its error in the same Hessian-weighted perturbation, as Hessian-aware
# pruning does), so the size is reached by whichever of the two hurts the second-order loss estimate least.
# Then fixed-choice QAT for the same total epochs as every other method.
HAWQ_BITS = (2, 3, 4, 6, 8)
HAWQ_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


def hutchinson_traces(model: nn.Module, batches: list, loss_fn: Callable, samples: int = 4,
                      seed: int = 0) -> dict[str, float]:
    """Tr(∇²L restricted to each prunable weight) estimated as mean over Rademacher v of vᵀHv (Hutchinson), with
    Hessian-vector products from double backward, averaged over ``batches`` (model in eval mode: BN fixed)."""
    from prunequant.core.targets import weight_key
    from prunequant.pruning.base import prunable_modules

    named = [(weight_key(n, p), getattr(m, p)) for n, m, p in prunable_modules(model)]
    params = [w for _, w in named]
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    acc = [0.0] * len(params)
    try:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for _ in range(samples):
                vs = [torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1 for p in params]
                hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
                for i, (hv, v) in enumerate(zip(hvs, vs)):
                    acc[i] += float((hv * v).sum())
    finally:
        model.train(was)
    n = len(batches) * samples
    return {k: a / n for (k, _), a in zip(named, acc)}


@torch.no_grad()
def hawq_allocate(options: list[list[tuple[float, float]]], budget_bits: float) -> list[int]:
    """Multiple-choice knapsack: one option (Ω, bits) per layer, minimise Σ Ω with Σ bits <= budget. Lagrangian
    relaxation (each layer picks argmin Ω + μ·bits; bisection on μ) for the convex-hull solution, then a greedy
    fill: switch the layer whose move lowers Ω most per extra bit while the budget holds."""
    import math

    def pick(mu):
        return [min(range(len(o)), key=lambda j: (o[j][0] + mu * o[j][1], o[j][1])) for o in options]

    def total(choice):
        return sum(o[c][1] for o, c in zip(options, choice))

    lo, hi = 0.0, 1.0
    while total(pick(hi)) > budget_bits and hi < 1e30:
        hi *= 10
    for _ in range(100):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 1e6
        lo, hi = (mid, hi) if total(pick(mid)) > budget_bits else (lo, mid)
        if hi / max(lo, 1e-300) < 1 + 1e-6:
            break
    choice = pick(hi)
    used = total(choice)
    while True:
        best = None
        for li, (o, c) in enumerate(zip(options, choice)):
            for j, (om, b) in enumerate(o):
                extra = b - o[c][1]
                gain = o[c][0] - om
                if gain <= 0 or used + extra > budget_bits:
                    continue
                score = gain / max(extra, 1e-9)
                if best is None or score > best[0]:
                    best = (score, li, j, extra)
        if best is None:
            break
        _, li, j, extra = best
        choice[li] = j
        used += extra
    return choice


def hawq_mixed_(model: nn.Module, target_bytes: float, train, val, loss_fn: Callable, metric: Callable,
                abits: int, epochs: int, seed: int, exclude=None, calib_batches: int = 2,
                samples: int = 4, granularity: str = "tensor") -> dict:
    """The hawq-mixed peer on ``model`` in place; returns the per-layer allocation and the traces."""
    from prunequant.core.cost import cheapest_format
    from prunequant.core.targets import weight_key
    from prunequant.joint import attach_joint_, finalize_, harden_
    from prunequant.pruning.base import apply_mask_, prunable_modules
    from prunequant.training import TrainConfig, Trainer

    batches = [b for _, b in zip(range(calib_batches), train)]
    traces = hutchinson_traces(model, batches, loss_fn, samples, seed)
    # options per layer: (sparsity, bits) -> (Ω, stored bits), measured with the joint quantizers the QAT uses
    probe = copy.deepcopy(model)
    cfg = JointConfig(weight_bits=HAWQ_BITS, act_bits=(abits,), prune=False, epochs=0, finetune_epochs=epochs,
                      exclude=exclude, granularity=granularity)
    layers, fixed_bits, _ = attach_joint_(probe, cfg, batches[:1], batches[0][0][:1])
    opts, grid = [], []
    for l in layers:
        w = l.raw.detach()
        mags = w.abs().flatten().sort().values
        omega = max(traces[l.name], 0.0) / l.numel
        o, gi = [], []
        for s in HAWQ_SPARSITIES:
            k = int(round(s * l.numel))
            thr = mags[k - 1] if k > 0 else -1.0
            wm = w * (w.abs() > thr)
            for i, b in enumerate(HAWQ_BITS):
                q = l.wq.candidate(wm, i)
                vb, sb = l.candidate_cost(i)
                nnz = int(q.count_nonzero())
                bits = cheapest_format(tuple(w.shape), nnz, vb)[1] + sb
                o.append((omega * float(((q - w) ** 2).sum()), float(bits)))
                gi.append((s, b))
        opts.append(o)
        grid.append(gi)
    choice = hawq_allocate(opts, target_bytes * 8 - fixed_bits)
    del probe
    # apply: per-layer magnitude masks, then the joint quantizers with each layer's choice frozen, then QAT
    keys = {l.name: (s_b[c]) for l, s_b, c in zip(layers, grid, choice)}
    for name, module, pname in prunable_modules(model, None, exclude):
        s, _ = keys[weight_key(name, pname)]
        w = getattr(module, pname).detach()
        k = int(round(s * w.numel()))
        thr = w.abs().flatten().sort().values[k - 1] if k > 0 else -1.0
        apply_mask_(module, pname, w.abs() > thr, layer_name=weight_key(name, pname))
    layers, fixed_bits, _ = attach_joint_(model, cfg, batches, batches[0][0][:1])
    for l in layers:
        l.wq.mixture.harden_(torch.tensor(HAWQ_BITS.index(keys[l.name][1])))
    harden_(model, layers=layers, fixed_bits=fixed_bits)
    if epochs > 0:
        Trainer(model, TrainConfig(epochs=epochs, schedule="cosine", seed=seed, progress=False), loss_fn=loss_fn,
                metric=metric).fit(train, val)
    finalize_(model)
    return {"allocation_hawq": [{"layer": l.name, "trace": traces[l.name], "sparsity": keys[l.name][0],
                                 "wbits": keys[l.name][1]} for l in layers]}


def run_method(task: Task, method: str, seed: int, target: float, args, overrides: dict | None = None,
               score: Callable | None = None, with_val: bool = False) -> dict:
    soft, ft = task.epochs
    model = task.fp32(seed)
    train, val = task.loaders(seed)
    ex = list(task.exclude) if task.exclude else None
    if method == "joint":
        extra = dict(overrides if overrides is not None else (task.joint_overrides or {}))
        cfg = JointConfig(**{"target_size_bytes": target, "target_abits": task.abits, "epochs": soft,
                             "finetune_epochs": ft, "exclude": ex, "granularity": args.granularity, **extra})
    elif method == "hawq-mixed":
        torch.manual_seed(seed)
        extra = hawq_mixed_(model, target, train, val, task.loss_fn, task.train_metric, task.abits, soft + ft, seed,
                            exclude=ex, granularity=args.granularity)
        out = {**model_stats(model, task.example), "metric": (score or task.score)(model),
               "metric_name": task.metric_name, **extra}
        if with_val and task.val_score is not None:
            out["val_metric"] = task.val_score(model)
        return out
    elif method in ("qat-after-magnitude", "uniform-2bit"):
        wbits = 2 if method == "uniform-2bit" else args.wbits
        cfg = MagnitudeQATConfig(target_size_bytes=target, wbits=wbits, abits=task.abits, epochs=soft + ft,
                                 exclude=ex, granularity=args.granularity)
    else:
        cfg = AnalyticPWLQConfig(target_size_bytes=target, wbits=args.wbits, abits=task.abits, prune_epochs=soft,
                                 finetune_epochs=ft, exclude=ex, granularity=args.granularity)
    torch.manual_seed(seed)
    result = prune_quantize_(model, cfg, train=train, val=val, loss_fn=task.loss_fn, metric=task.train_metric)
    out = {**model_stats(model, task.example), "metric": (score or task.score)(model),
           "metric_name": task.metric_name}
    if with_val and task.val_score is not None:
        out["val_metric"] = task.val_score(model)
    if method == "joint" and getattr(result, "table", None):
        out["allocation"] = [{k: r[k] for k in ("layer", "params", "sparsity", "wbits", "abits")}
                             for r in result.table]
    if method == "joint":  # the soft -> hard transition: where the soft phase ended and what hardening cost
        soft_end = next((h for h in reversed(result.history) if h.get("phase") == "soft"), {})
        out["soft_end"] = {k: soft_end[k] for k in ("size_bytes", "sparsity", "wbits", "abits") if k in soft_end}
        out["val_metric_soft"], out["val_metric_hard"] = result.val_metric_soft, result.val_metric_hard
    return out


def _loss_vs_fp32(task: Task, fp32: float, metric: float) -> float:
    """How much worse than fp32: accuracy points lost, or RMSE increase (mg/dL)."""
    return (fp32 - metric) * 100 if task.higher_is_better else metric - fp32


def _mean_rows(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if "error" in r:
            continue
        groups.setdefault((r["dataset"], r["model"], r["method"], r["target_ratio"]), []).append(r)
    rows = []
    for (dataset, model, method, ratio), rs in groups.items():
        row = {"dataset": dataset, "model": model, "method": method, "target_ratio": ratio, "seeds": len(rs)}
        for k in ("size_bytes", "compression_ratio", "bops_ratio", "avg_wbits", "avg_abits", "sparsity", "bops",
                  "metric", "loss_vs_fp32"):
            row[k] = statistics.fmean(r[k] for r in rs)
        row["metric_std"] = statistics.stdev([r["metric"] for r in rs]) if len(rs) > 1 else 0.0
        row["metric_name"] = rs[0]["metric_name"]
        rows.append(row)
    return rows


def _summary(rows: list[dict]) -> dict:
    """Goal check on the digits CNN (largest mean compression with <= 1 pt mean accuracy loss, per method) and
    joint minus each baseline at every target (metric and size, both models)."""
    out: dict = {}
    for method in METHODS:
        ok = [r for r in rows if r["model"] == "digits_cnn" and r["method"] == method and r["loss_vs_fp32"] <= 1.0]
        out[f"digits_{method}_best_ratio_within_1pt"] = max((r["compression_ratio"] for r in ok), default=None)
    comp = []
    for r in rows:
        if r["method"] != "joint":
            continue
        for b in rows:
            if b["model"] == r["model"] and b["method"] in BASELINES and b["target_ratio"] == r["target_ratio"]:
                spread = max(r["metric_std"], b["metric_std"])
                comp.append({"dataset": r["dataset"], "model": r["model"], "target_ratio": r["target_ratio"],
                             "baseline": b["method"], "joint_metric": r["metric"], "baseline_metric": b["metric"],
                             "seed_spread": spread,
                             "joint_ahead_beyond_spread": (r["metric"] - b["metric"]) > spread
                             if r["metric_name"] == "accuracy" else (b["metric"] - r["metric"]) > spread,
                             "joint_size": r["size_bytes"], "baseline_size": b["size_bytes"],
                             "joint_better": round((r["metric"] - b["metric"]) * (1 if r["metric_name"] ==
                                                                                  "accuracy" else -1), 6) > 0})
    out["joint_vs_baselines"] = comp
    for model in sorted({r["model"] for r in rows if r["dataset"] == "fashion-mnist"}):
        js = [r for r in rows if r["model"] == model and r["method"] == "joint"]
        if not js:
            continue
        top = max(r["target_ratio"] for r in js)
        at_top = [c for c in comp if c["model"] == model and c["target_ratio"] == top]
        ok30 = [r for r in js if r["compression_ratio"] >= 30.0 and r["loss_vs_fp32"] <= 1.0]
        out[f"fashion_{model}_goal"] = {
            "top_target_ratio": top,
            "joint_ahead_of_every_baseline_beyond_spread": bool(at_top) and all(
                c["joint_ahead_beyond_spread"] for c in at_top),
            "joint_within_1pt_at_30x_or_more": bool(ok30),
            "joint_loss_vs_fp32_pts": {f"{r['target_ratio']:g}x": round(r["loss_vs_fp32"], 3) for r in js}}
    best = out["digits_joint_best_ratio_within_1pt"]
    out["goal_30x_within_1pt"] = bool(best is not None and best >= 30.0)
    return out


def _plot(task: Task, rows: list[dict], fp32: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for method, marker in zip(task.methods, "os^vD"):
        pts = sorted((r["size_bytes"], r["metric"], r["metric_std"]) for r in rows if r["method"] == method)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker=marker,
                        capsize=3, label=method)
    ax.axhline(fp32["metric"], color="gray", ls="--", lw=1, label=f"fp32 ({fp32['size_bytes']:,.0f} B)")
    if task.higher_is_better:
        ax.axhline(fp32["metric"] - 0.01, color="gray", ls=":", lw=1, label="fp32 - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("compressed size (bytes, report)")
    ax.set_ylabel(f"test {task.metric_name} (mean over {task.seeds} seed(s))")
    ax.set_title(f"{task.name}: {task.metric_name} vs size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _table(task: Task, rows: list[dict], args) -> Table:
    t = Table(title=f"{task.name}, {task.seeds} seed(s), feature maps {task.abits} bits, baselines {args.wbits}-bit "
                    f"weights, {task.epochs[0]}+{task.epochs[1]} epochs")
    loss_col = "drop pts" if task.higher_is_better else "Δ vs fp32"
    for c in ("method", "target", "size B", "ratio", "w bits", "a bits", "sparsity", task.metric_name, "± std",
              loss_col):
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in sorted(rows, key=lambda r: (r["target_ratio"], r["method"])):
        t.add_row(r["method"], f"{r['target_ratio']:g}x", f"{r['size_bytes']:,.0f}", f"{r['compression_ratio']:.1f}",
                  f"{r['avg_wbits']:.2f}", f"{r['avg_abits']:.2f}", f"{r['sparsity']:.1%}", f"{r['metric']:.4f}",
                  f"{r['metric_std']:.4f}", f"{r['loss_vs_fp32']:.2f}")
    return t


def _plot_allocation(task: Task, run: dict, sens: dict[str, float], path: Path, hawq: dict | None = None) -> None:
    """The learned per-layer allocation (sparsity, weight bits, feature-map bits) of one joint run next to each
    layer's one-at-a-time 2-bit sensitivity; with a hawq-mixed run of the same seed and target also its
    allocation and its per-layer average Hessian trace Tr(H)/n."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    alloc = run["allocation"]
    names = [a["layer"].removesuffix(".weight") for a in alloc]
    x = np.arange(len(alloc))
    hw = {a["layer"]: a for a in (hawq or {}).get("allocation_hawq", [])}
    panels = 4 if hw else 3
    fig = Figure(figsize=(max(8, 0.35 * len(alloc)), 2.4 * panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True)
    axes[0].bar(x, [sens.get(a["layer"], np.nan) for a in alloc], color="tab:red")
    axes[0].set_ylabel("sensitivity\n(pts lost, 2-bit alone)")
    i = 1
    if hw:
        n = {a["layer"]: a["params"] for a in alloc}
        axes[1].bar(x, [hw[a["layer"]]["trace"] / n[a["layer"]] if a["layer"] in hw else np.nan for a in alloc],
                    color="tab:purple")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("Hessian trace / n\n(Hutchinson)")
        i = 2
    w = 0.4 if hw else 0.8
    axes[i].bar(x - (w / 2 if hw else 0), [a["sparsity"] for a in alloc], width=w, color="tab:gray", label="joint")
    if hw:
        axes[i].bar(x + w / 2, [hw.get(a["layer"], {}).get("sparsity", np.nan) for a in alloc], width=w,
                    color="tab:purple", alpha=0.6, label="hawq-mixed")
        axes[i].legend(fontsize=8)
    axes[i].set_ylabel("sparsity")
    axes[i + 1].plot(x, [a["wbits"] for a in alloc], "o-", label="joint weight bits")
    axes[i + 1].plot(x, [a["abits"] for a in alloc], "s--", label="joint feature-map bits")
    if hw:
        axes[i + 1].plot(x, [hw.get(a["layer"], {}).get("wbits", np.nan) for a in alloc], "^:", color="tab:purple",
                         label="hawq-mixed weight bits")
    axes[i + 1].set_ylabel("bits")
    axes[i + 1].legend(fontsize=8)
    axes[i + 1].set_xticks(x, names, rotation=90, fontsize=6)
    axes[0].set_title(f"{task.dataset} {task.name}: joint allocation at {run['target_ratio']:g}x "
                      f"(seed {run['seed']}) vs layer sensitivity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_task(task: Task, args, bar, progress_task, dump: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Per seed (in ``task.seed_list`` order, so a reference model still being trained elsewhere is waited for
    only when needed): its fp32 row, then every (ratio, method) run, the highest ratio first; ``dump(runs)``
    after each run writes the partial results."""
    runs = []
    took: dict[str, list[float]] = {}
    for seed in task.seed_list or range(task.seeds):
        if _past(args, 0.0):
            break
        try:
            model = task.fp32(seed)
        except TimeoutError as e:  # --wait-for-references / --finish-by: a model that is not there in time
            runs.append({"dataset": task.dataset, "model": task.name, "method": "fp32", "seed": seed, "error": str(e)})
            break
        fp32 = {**model_stats(model, task.example), "metric": task.score(model), "metric_name": task.metric_name}
        runs.append({"dataset": task.dataset, "model": task.name, "method": "fp32", "seed": seed, "target_ratio": 1.0,
                     "loss_vs_fp32": 0.0, "bops_ratio": 1.0, **fp32})
        bar.advance(progress_task)
        for ratio in sorted(task.ratios, reverse=True):
            target = fp32["size_bytes"] / ratio  # budget for the tensors; the .pq file overhead comes on top
            for method in task.methods:
                bar.update(progress_task, description=f"{task.name} seed {seed} {ratio:g}x {method}")
                t = time.perf_counter()
                res = task.reuse.get((seed, ratio, method))
                if res is None and _past(args, statistics.fmean(took.get(method, [0.0]))):
                    runs.append({"dataset": task.dataset, "model": task.name, "method": method, "seed": seed,
                                 "target_ratio": ratio, "error": "skipped: would end after --finish-by"})
                    continue
                if res is None:
                    try:
                        res = run_method(task, method, seed, target, args)
                    except Exception as e:  # one failing method must not lose the other rows: record it
                        runs.append({"dataset": task.dataset, "model": task.name, "method": method, "seed": seed,
                                     "target_ratio": ratio, "error": f"{type(e).__name__}: {e}"})
                        bar.advance(progress_task)
                        continue
                    res["seconds"] = time.perf_counter() - t
                    took.setdefault(method, []).append(res["seconds"])
                res["bops_ratio"] = fp32["bops"] / res["bops"] if res["bops"] else float("inf")
                runs.append({"dataset": task.dataset, "model": task.name, "method": method, "seed": seed,
                             "target_ratio": ratio, "target_bytes": target, "fp32_metric": fp32["metric"],
                             "loss_vs_fp32": _loss_vs_fp32(task, fp32["metric"], res["metric"]), **res})
                bar.advance(progress_task)
                if dump is not None:
                    dump(runs)
    return runs


def _past(args, seconds_ahead: float) -> bool:
    """True when ``--finish-by HH:MM`` (UTC) is set and now + ``seconds_ahead`` is later."""
    if not getattr(args, "finish_by", None):
        return False
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    h, m = (int(v) for v in args.finish_by.split(":"))
    end = now.replace(hour=h, minute=m, second=0, microsecond=0)
    return now + dt.timedelta(seconds=seconds_ahead) > end


def _atomic_write(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=float).encode())


def merge_results(paths: list[Path], out: Path, replace: tuple[str, ...] = ()) -> dict:
    """Merge the runs of several joint results (e.g. one process per seed) and recompute rows and summary.

    ``replace``: methods whose runs in a later file replace every run of that method (same dataset, model and
    target ratio) from the earlier files, e.g. ``("joint",)`` after re-running only the joint method with a
    re-selected config (the baselines do not depend on it); the result lists what was replaced under ``replaced``.

    Raises:
        SystemExit: a file is missing or not a joint result, or two files disagree on the same run.
    """
    runs: dict[tuple, dict] = {}
    replaced: list[dict] = []
    selection: dict = {}
    meta: dict = {"seconds": 0.0, "epochs": {}, "abits": {}}
    for p in paths:
        if not Path(p).is_file():
            raise SystemExit(f"--merge: no such file {p}")
        d = json.loads(Path(p).read_text())
        if d.get("benchmark") != "joint" or "runs" not in d:
            raise SystemExit(f"--merge: {p} is not a joint benchmark result")
        gran = d.get("granularity", "tensor")
        if meta.setdefault("granularity", gran) != gran:
            raise SystemExit(f"--merge: {p} used {gran} weight scales, an earlier file {meta['granularity']}")
        js = d.get("joint_set", {})
        if meta.setdefault("joint_set", js) != js:
            raise SystemExit(f"--merge: {p} ran joint with {js}, an earlier file with {meta['joint_set']}")
        for name, sel in d.get("candidate_selection", {}).items():
            if not sel.get("given") or name not in selection:
                selection[name] = sel
        meta["seconds"] += d.get("seconds", 0.0)
        meta["epochs"].update(d.get("epochs", {}))
        meta["abits"].update(d.get("abits", {}))
        meta.setdefault("baseline_wbits", d.get("baseline_wbits"))
        fresh = {(r["dataset"], r["model"], r["method"], r["target_ratio"])
                 for r in d["runs"] if r["method"] in replace}
        for k in [k for k in runs if (*k[:3], k[4]) in fresh]:
            replaced.append({"file": str(p), "run": list(k), "old_metric": runs.pop(k)["metric"]})
        for r in d["runs"]:
            if "error" in r:
                continue
            key = (r["dataset"], r["model"], r["method"], r["seed"], r["target_ratio"])
            old = runs.get(key)
            if old is not None and abs(old["metric"] - r["metric"]) > 1e-9:
                raise SystemExit(f"--merge: {key} has metric {old['metric']} in one file and {r['metric']} in {p}")
            runs[key] = r
    allruns = list(runs.values())
    rows = _mean_rows(allruns)
    seeds = {m: len({k[3] for k in runs if k[1] == m}) for m in {k[1] for k in runs}}
    result = {"benchmark": "joint", "quick": False, "seeds": seeds, **meta, "candidate_selection": selection,
              "merged_from": [str(p) for p in paths], "replaced": replaced, "rows": rows, "runs": allruns,
              "summary": _summary(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, result)
    print(json.dumps(result, default=float))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short schedules; glucose: 1 seed (< 3 min)")
    ap.add_argument("--seeds", type=int, default=3, help="digits seeds")
    ap.add_argument("--glucose-seeds", type=int, default=3, help="glucose seeds (--quick: 1)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[16.0, 24.0, 32.0], help="digits targets")
    ap.add_argument("--glucose-ratios", type=float, nargs="+", default=[6.0, 8.0, 10.0], help="glucose targets")
    ap.add_argument("--models", nargs="+", default=["digits", "glucose", "fashion_resnet", "fashion_mobilenetv2"],
                    choices=["digits", "glucose", "fashion_resnet", "fashion_mobilenetv2"])
    ap.add_argument("--fashion-ratios", type=float, nargs="+", default=[16.0, 32.0, 64.0])
    ap.add_argument("--fashion-seeds", type=int, default=3, help="Fashion-MNIST seeds (--quick: 1)")
    ap.add_argument("--fashion-epochs", type=int, default=4, help="Fashion-MNIST soft epochs (fine-tune: half)")
    ap.add_argument("--fashion-train", type=int, default=12000,
                    help="Fashion-MNIST training images (seeded subset) every method trains on")
    ap.add_argument("--fashion-val", type=int, default=5000, help="validation images (first half of the test set)")
    ap.add_argument("--fashion-test", type=int, default=5000, help="reported test images (second half)")
    ap.add_argument("--fashion-batch", type=int, default=64, help="Fashion-MNIST training batch size")
    ap.add_argument("--fashion-seed-list", type=int, nargs="+", default=None,
                    help="run these Fashion-MNIST seeds (default: range(--fashion-seeds))")
    ap.add_argument("--fashion-schedule", default="quick", choices=["quick", "full"],
                    help="schedule of the Fashion-MNIST reference models (see models.fashion.SCHEDULES)")
    ap.add_argument("--wait-for-references", type=float, default=0.0, metavar="MIN",
                    help="wait up to MIN minutes for a Fashion-MNIST reference model being trained elsewhere")
    ap.add_argument("--finish-by", default=None, metavar="HH:MM",
                    help="UTC time: start no run expected to end later (same method's mean time so far); stop waiting "
                         "for reference models then; the results so far are written as usual")
    ap.add_argument("--select-candidates", action="store_true",
                    help="choose the joint candidate bit sets on the Fashion-MNIST validation split first")
    ap.add_argument("--joint-candidates", default=None, type=parse_candidates, metavar="wB-B../aB-B..",
                    help="use this joint candidate set on the Fashion-MNIST models (e.g. the one an earlier "
                         "--select-candidates run chose on the validation split, or w4/a4 for an ablation with "
                         "fixed bits) instead of JointConfig's default")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge the runs of earlier joint.json / joint_partial.json files (a (model, "
                         "method, seed, ratio) in several files must agree) into --out/joint.json")
    ap.add_argument("--joint-set", nargs="+", default=[], type=parse_setting, metavar="FIELD=VALUE",
                    help="extra JointConfig fields for the Fashion-MNIST joint runs (ablations), e.g. "
                         "tau_schedule=whole logit_lr=0.01; values are JSON, else strings")
    ap.add_argument("--granularity", default="tensor", choices=("tensor", "channel"),
                    help="weight-quantizer scales of every method (one per tensor, or per output channel)")
    ap.add_argument("--replace", nargs="+", default=[], metavar="METHOD",
                    help="with --merge: a later file's runs of METHOD replace all earlier runs of it for that model "
                         "and target ratio")
    ap.add_argument("--abits", type=int, default=4, help="digits feature-map bits (joint: target average)")
    ap.add_argument("--wbits", type=int, default=4, help="baselines' weight bits")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="run only these methods on the Fashion-MNIST models (default: all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/joint"))
    args = ap.parse_args()
    if args.merge:
        merge_results(args.merge, args.out / "joint.json", tuple(args.replace))
        return
    torch.set_num_threads(1)  # 2 shared cores: more threads only contend
    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [digits_task(args)] if "digits" in args.models else []
    if "glucose" in args.models:
        tasks.append(glucose_task(args))
    selection = {}
    for name in ("fashion_resnet", "fashion_mobilenetv2"):
        if name in args.models:
            try:
                task = fashion_task(args, name)
            except Exception as e:  # data absent: say so, keep the other rows
                console.print(f"[yellow]skipping {name}: {e}")
                continue
            if args.fashion_seed_list:
                task.seed_list = list(args.fashion_seed_list)
                task.seeds = len(task.seed_list)
            if args.methods:
                task.methods = tuple(m for m in task.methods if m in args.methods)
            if args.joint_set:
                task.joint_overrides = {**(task.joint_overrides or {}), **dict(args.joint_set)}
            if args.select_candidates:
                selection[task.name] = select_candidates(task, args)
                task.joint_overrides = {**selection[task.name]["overrides"], **dict(args.joint_set)}
            elif args.joint_candidates:
                key, overrides = args.joint_candidates
                selection[task.name] = {"chosen": key, "given": True, "overrides": overrides}
                task.joint_overrides = {**overrides, **dict(args.joint_set)}
            tasks.append(task)
    runs: list[dict] = []
    total = sum(t.seeds * (1 + len(t.ratios) * len(t.methods)) for t in tasks)
    with Progress(console=console, transient=True) as bar:
        progress_task = bar.add_task("joint benchmark", total=total)
        partial = args.out / "joint_partial.json"
        for task in tasks:
            done = list(runs)
            runs += run_task(task, args, bar, progress_task,
                             lambda rs, done=done: _atomic_write(partial, {"benchmark": "joint", "partial": True,
                                                                           "candidate_selection": selection,
                                                                           "runs": done + rs}))
    rows = _mean_rows(runs)
    for task in tasks:
        trows = [r for r in rows if r["model"] == task.name]
        fp32 = next(r for r in trows if r["method"] == "fp32")
        if task.sensitivity is not None:
            top = max(task.ratios)
            run = next((r for r in runs if r["model"] == task.name and r["method"] == "joint"
                        and r["target_ratio"] == top and r.get("allocation")), None)
            if run is not None:
                sens = task.sensitivity(task.fp32(run["seed"]))
                run["sensitivity"] = sens
                hawq = next((r for r in runs if r["model"] == task.name and r["method"] == "hawq-mixed"
                             and r["target_ratio"] == top and r["seed"] == run["seed"]), None)
                _plot_allocation(task, run, sens, args.out / f"{task.name}_allocation.png", hawq)
        _plot(task, [r for r in trows if r["method"] != "fp32"], fp32, args.out / f"{task.name}_metric_vs_size.png")
        Console(width=150).print(_table(task, trows, args))
    result = {"benchmark": "joint", "quick": args.quick, "granularity": args.granularity,
              "joint_set": dict(args.joint_set),
              "seeds": {t.name: t.seeds for t in tasks},
              "epochs": {t.name: list(t.epochs) for t in tasks}, "abits": {t.name: t.abits for t in tasks},
              "baseline_wbits": args.wbits, "seconds": round(time.perf_counter() - t0, 1),
              "candidate_selection": selection, "rows": rows,
              "runs": runs, "summary": _summary(rows)}
    _atomic_write(args.out / ("joint_quick.json" if args.quick else "joint.json"), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Post-training quantization accuracy on digits: FP32 vs uniform vs PWLQ (each with and without bias
correction) vs PyTorch's own PTQ (torch.ao FX graph mode, per-channel symmetric weight observers, histogram
activation observers, real int8 kernels with the code range cut to the bit width).

Pipeline for uniform and PWLQ (the paper's): BN folded, per-channel weights, per-layer activations calibrated by
top-10 median on 512 random training images in batches of 4 (128 batches). PWLQ: 1 breakpoint, b-center
variant, empirical breakpoints (the package defaults). Uniform: symmetric, same pipeline. Activations are uniform
in every scheme (also at W4A4). Each trained model (seed s) is quantized by every scheme from the same weights.

    .venv/bin/python benchmarks/pwlq_accuracy.py --quick   # 1 seed
    .venv/bin/python benchmarks/pwlq_accuracy.py           # 3 seeds (mean over seeds per row)

Last stdout line: {"benchmark": "pwlq_accuracy", "rows": [{"model", "scheme", "wbits", "abits",
"bias_correction", "accuracy", "accuracy_per_seed"}], ...}
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import torch

from prunequant import quantize_
from prunequant.data import digits_splits
from prunequant.models import train_reference
from prunequant.quantization import PWLQConfig

SETTINGS = ((8, 8), (6, 8), (4, 8), (3, 8), (4, 4))
MODELS = ("digits_cnn", "resnet_small")


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def torch_ao_ptq(model, wbits: int, abits: int, calib: torch.Tensor, example: torch.Tensor):
    """torch.ao FX PTQ: per-channel symmetric weights in [-2^(w-1), 2^(w-1)-1], activations quint8 cut to
    [0, 2^a - 1] with a histogram observer, converted to quantized kernels (x86/fbgemm)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qc = QConfig(activation=HistogramObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=2 ** abits - 1),
                 weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                           quant_min=-(2 ** (wbits - 1)),
                                                           quant_max=2 ** (wbits - 1) - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), QConfigMapping().set_global(qc), example_inputs=(example,))
        with torch.no_grad():
            for xb in calib.split(32):
                prepared(xb)
        return convert_fx(prepared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one training seed")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds (default 1 quick / 3 full)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # batch-4 calibration: small ops, threads only add overhead on a shared machine
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    splits = digits_splits(0)
    x_train = splits["train"].tensors[0]
    x_test, y_test = splits["test"].tensors
    t0 = time.perf_counter()
    acc: dict[tuple, list[float]] = {}

    def record(key, value):
        acc.setdefault(key, []).append(value)

    for name in MODELS:
        for seed in seeds:
            model, _ = train_reference(name, seed=seed)
            g = torch.Generator().manual_seed(1000 + seed)
            calib = x_train[torch.randperm(len(x_train), generator=g)[:512]]
            record((name, "fp32", 32, 32, False), accuracy(model, x_test, y_test))
            for wb, ab in SETTINGS:
                for scheme in ("uniform", "pwlq"):
                    for bc in (False, True):
                        m = copy.deepcopy(model)
                        quantize_(m, PWLQConfig(wbits=wb, abits=ab, scheme=scheme, bias_correction=bc,
                                                calibration_batch_size=4, lloyd_max=False), calibration_data=calib)
                        record((name, scheme, wb, ab, bc), accuracy(m, x_test, y_test))
                try:
                    q = torch_ao_ptq(model, wb, ab, calib, x_test[:1])
                    record((name, "torch_ao", wb, ab, False), accuracy(q, x_test, y_test))
                except Exception as e:  # noqa: BLE001 - report where torch.ao does not apply
                    record((name, "torch_ao", wb, ab, False), float("nan"))
                    print(f"torch.ao PTQ failed for {name} W{wb}A{ab}: {e}")
            print(f"{name} seed {seed}: done ({time.perf_counter() - t0:.0f}s)")

    rows = []
    for (name, scheme, wb, ab, bc), vals in acc.items():
        ok = [v for v in vals if not math.isnan(v)]
        rows.append({"model": name, "scheme": scheme, "wbits": wb, "abits": ab, "bias_correction": bc,
                     "accuracy": round(statistics.mean(ok), 4) if ok else None,
                     "accuracy_per_seed": [round(v, 4) for v in vals]})
    by = {(r["model"], r["scheme"], r["wbits"], r["abits"], r["bias_correction"]): r["accuracy"] for r in rows}
    comparisons = []
    for name in MODELS:
        for wb, ab in SETTINGS:
            for bc in (False, True):
                u, p = by[(name, "uniform", wb, ab, bc)], by[(name, "pwlq", wb, ab, bc)]
                comparisons.append({"model": name, "wbits": wb, "abits": ab, "bias_correction": bc, "uniform": u,
                                    "pwlq": p, "pwlq_ge_uniform": p >= u})
    print(f"{'model':13s} {'W/A':6s} {'BC':3s} {'uniform':>8s} {'pwlq':>8s} {'torch.ao':>8s}  (fp32)")
    for c in comparisons:
        ao = by[(c["model"], "torch_ao", c["wbits"], c["abits"], False)] if not c["bias_correction"] else None
        fp = by[(c["model"], "fp32", 32, 32, False)]
        print(f"{c['model']:13s} W{c['wbits']}A{c['abits']:<3d} {'on' if c['bias_correction'] else 'off':3s} "
              f"{c['uniform']:8.4f} {c['pwlq']:8.4f} {'' if ao is None else f'{ao:8.4f}':>8s}  ({fp:.4f})")
    result = {"benchmark": "pwlq_accuracy", "quick": args.quick, "seeds": seeds, "test_images": len(y_test),
              "calibration": "512 train images, top-10 median, batch 4", "rows": rows, "comparisons": comparisons,
              "goal_pwlq_ge_uniform_all": all(c["pwlq_ge_uniform"] for c in comparisons),
              "pwlq_ge_uniform_count": sum(c["pwlq_ge_uniform"] for c in comparisons),
              "comparisons_count": len(comparisons), "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pwlq_accuracy.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

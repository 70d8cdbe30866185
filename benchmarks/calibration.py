"""Activation calibration: each range estimator vs ``calibration="auto"`` (per-layer choice by output error).

Two cases, every estimator from the same weights and the same calibration inputs:

* ``outlier_block``: a transformer-like MLP block (Linear 64->128, GELU, Linear 128->64) on token features with
  three massive input channels (~40, like the massive activations of LLMs) that the first layer nearly ignores
  (its weights on them are scaled by 0.005), and the same block where it uses them (weights x2). Uniform W8
  weights (the weights are not the point here); metric: output relative error ``||y_q - y|| / ||y||`` on
  held-out tokens (A6, and A8 in the full run).
* digits reference models (``digits_cnn``, ``resnet_small``): PWLQ W4 (defaults, bias correction) at A8 and A4,
  calibrated on 512 training images in batches of 32; metric: test accuracy, and the fidelity check's output
  cosine on the calibration inputs.

    .venv/bin/python benchmarks/calibration.py --quick   # seed 0, block at A6, digits_cnn
    .venv/bin/python benchmarks/calibration.py           # seeds 0, 1, 2 (mean per row), A6 + A8, both CNNs

Last stdout line: {"benchmark": "calibration", "rows": [{"model", "method", "wbits", "abits", "metric", "value",
"output_cosine", "seconds"}]}
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import torch
from torch import nn

from prunequant import quantize_
from prunequant.data import digits_splits
from prunequant.models.reference import train_reference
from prunequant.quantization import PWLQConfig, UniformConfig

METHODS = ("minmax", "percentile", "topk_median", "mse", "auto")
OUTLIERS = [3, 17, 41]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(128, 64)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _block(seed: int, outlier_weight: float) -> Block:
    torch.manual_seed(seed)
    m = Block().eval()
    with torch.no_grad():
        m.fc1.weight[:, OUTLIERS] *= outlier_weight
    return m


def _tokens(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, 64, generator=g)
    x[..., OUTLIERS] = 40.0 + torch.randn(n, 16, len(OUTLIERS), generator=g)
    return x


def outlier_rows(seed: int, abits_list: tuple[int, ...]) -> list[dict]:
    rows = []
    calib, test = _tokens(64, 100 + seed), _tokens(64, 200 + seed)
    for case, w in (("outlier_block_ignored", 0.005), ("outlier_block_used", 2.0)):
        ref = _block(seed, w)
        with torch.no_grad():
            y_ref = ref(test)
        for abits in abits_list:
            for method in METHODS:
                m = _block(seed, w)
                t = time.perf_counter()
                res = quantize_(m, UniformConfig(wbits=8, abits=abits, calibration=method), calibration_data=calib)
                dt = time.perf_counter() - t
                with torch.no_grad():
                    err = float((m(test) - y_ref).norm() / y_ref.norm())
                rows.append({"model": case, "method": method, "wbits": 8, "abits": abits, "metric": "rel_error",
                             "value": err, "output_cosine": res.fidelity.output_cosine, "seconds": dt})
    return rows


@torch.no_grad()
def _accuracy(model, x, y) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def digits_rows(seed: int, models: tuple[str, ...]) -> list[dict]:
    s = digits_splits()
    g = torch.Generator().manual_seed(seed)
    xtr = s["train"].tensors[0]
    calib = xtr[torch.randperm(len(xtr), generator=g)[:512]]
    xte, yte = s["test"].tensors
    rows = []
    for name in models:
        ref, _ = train_reference(name, seed=seed)
        rows.append({"model": name, "method": "fp32", "wbits": 32, "abits": 32, "metric": "accuracy",
                     "value": _accuracy(ref, xte, yte), "output_cosine": 1.0, "seconds": 0.0})
        for abits in (8, 4):
            for method in METHODS:
                m, _ = train_reference(name, seed=seed)  # a fresh copy of the same weights
                t = time.perf_counter()
                res = quantize_(m, PWLQConfig(wbits=4, abits=abits, calibration=method), calibration_data=calib)
                dt = time.perf_counter() - t
                rows.append({"model": name, "method": method, "wbits": 4, "abits": abits, "metric": "accuracy",
                             "value": _accuracy(m, xte, yte), "output_cosine": res.fidelity.output_cosine,
                             "seconds": dt})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, A6 only on the block, digits_cnn only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    logging.getLogger("prunequant").setLevel(logging.ERROR)  # the fidelity warnings are the point of some rows
    seeds = (0,) if args.quick else (0, 1, 2)
    per_seed: dict[tuple, list[dict]] = {}
    for seed in seeds:
        rows = outlier_rows(seed, (6,) if args.quick else (6, 8))
        rows += digits_rows(seed, ("digits_cnn",) if args.quick else ("digits_cnn", "resnet_small"))
        for r in rows:
            per_seed.setdefault((r["model"], r["method"], r["wbits"], r["abits"]), []).append(r)
    rows = []
    for (model, method, wbits, abits), rs in per_seed.items():
        row = {"model": model, "method": method, "wbits": wbits, "abits": abits, "metric": rs[0]["metric"],
               "value": statistics.mean(r["value"] for r in rs),
               "output_cosine": statistics.mean(r["output_cosine"] for r in rs),
               "seconds": statistics.mean(r["seconds"] for r in rs), "seeds": len(rs)}
        rows.append(row)
        print(f"{model:24s} {method:12s} W{wbits}A{abits}  {row['metric']} {row['value']:.4f}  "
              f"cos {row['output_cosine']:.4f}  {row['seconds']:.2f}s")
    print(json.dumps({"benchmark": "calibration", "seeds": list(seeds), "rows": rows}))


if __name__ == "__main__":
    main()

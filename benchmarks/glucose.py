"""Glucose app benchmark: two stacked LSTMs vs PLS, and the compressed LSTM, on simulated and real data.

* ``simulated``: 128 training / 8 validation / 16 held-out test subjects of the NIR simulator (a SIMULATION:
  39-channel wearable spectrometer 1000–2500 nm, 5-minute readings, 30-minute windows); blood glucose in mg/dL.
* ``fermentation``: real mid-IR spectra (chemotools): 21 lab standards for training, the 34 HPLC points of a
  fermentation run for testing; glucose in g/L (clinical grids do not apply: their fields are null).

Rows: ``pls`` (components by cross-validation; simulated: subject-grouped), ``pls_augmented`` (fermentation: PLS
on the LSTM's augmented training set, augmentation inside the CV folds), ``lstm``, ``lstm_compressed``
(analytic-threshold pruning + PWLQ). ``size_bytes``: PLS = float32 regression vector + mean + intercept; LSTM =
:func:`prunequant.analysis.report` bytes (sparse / low-bit aware) + the model's fixed buffers.
Goals (issue 7): simulated LSTM MARD <= 5 % and Clarke A >= 99 %; fermentation LSTM RMSE < PLS RMSE; compressed
LSTM >= 10x smaller with MARD within 0.5 point (simulated).

    .venv/bin/python benchmarks/glucose.py --quick    # one seed, ~2-3 min on the shared CPU
    .venv/bin/python benchmarks/glucose.py            # + PLS on every window, 2 more fermentation seeds

Plots go to ``--out`` (default benchmarks/out/glucose). Last stdout line: {"benchmark": "glucose", "rows": [...],
"goals": {...}, "seconds": ...}.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from prunequant.apps.glucose.experiments import (
    FermentationRecipe,
    SimulatedRecipe,
    run_fermentation,
    run_simulated,
)


def _clean(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one fermentation seed, PLS on every 3rd window")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/glucose"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    t0 = time.perf_counter()

    sim_recipe = SimulatedRecipe() if args.quick else replace(SimulatedRecipe(), pls_stride=1)
    console.rule("[bold]simulated subjects")
    sim = run_simulated(sim_recipe, out=args.out, console=console)
    console.rule("[bold]fermentation (real spectra)")
    ferm = run_fermentation(FermentationRecipe(), out=args.out, console=console,
                            seeds=None if args.quick else (1, 2))
    rows = [{k: _clean(v) for k, v in r.items()} for r in sim["rows"] + ferm["rows"]]

    def get(ds, model):
        return next(r for r in rows if r["dataset"] == ds and r["model"] == model)

    s_l, s_c = get("simulated", "lstm"), get("simulated", "lstm_compressed")
    f_l, f_p = get("fermentation", "lstm"), get("fermentation", "pls")
    f_pa = get("fermentation", "pls_augmented")
    goals = {
        "simulated_lstm_mard_le_5": s_l["mard"] <= 5.0,
        "simulated_lstm_clarke_a_ge_99": s_l["clarke_a"] >= 99.0,
        "fermentation_lstm_rmse_lt_pls": f_l["rmse"] < f_p["rmse"],
        "fermentation_lstm_rmse_lt_pls_augmented": f_l["rmse"] < f_pa["rmse"],
        "simulated_compressed_10x_smaller": s_l["size_bytes"] / s_c["size_bytes"] >= 10.0,
        "simulated_compressed_mard_within_0.5": s_c["mard"] - s_l["mard"] <= 0.5,
        "simulated_size_ratio": round(s_l["size_bytes"] / s_c["size_bytes"], 2),
        "fermentation_size_ratio": round(f_l["size_bytes"] / get("fermentation", "lstm_compressed")["size_bytes"], 2),
    }
    result = {"benchmark": "glucose", "quick": args.quick, "rows": rows, "goals": goals,
              "plots": sorted(str(p) for p in args.out.glob("*.png")),
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"glucose_{'quick' if args.quick else 'full'}.json").write_text(json.dumps(result, indent=1))
    for r in rows:
        console.print(f"{r['dataset']:>12} {r['model']:<16} rmse {r['rmse']:8.3f}  mard {r['mard']}  "
                      f"clarke A {r['clarke_a']}  A+B {r['clarke_ab']}  bytes {r['size_bytes']:,}")
    console.print(goals)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Glucose app benchmark: two stacked LSTMs vs their baselines, and the compressed LSTM, on four data sets.

* ``cgm-isig`` (REAL): one person's CGM record (bokeh-sampledata, 52,281 readings, 2010). Task: sensor current
  ``isig`` (1-hour windows) + sparse reference points (the device glucose at 07/12/18/22 h, a 4-a-day finger-stick
  cadence) → the device's calibrated glucose. Time split: first 60% train, next 10% validation, last 30% test.
  Baselines in the same run: ``linear-calibration`` (gain/offset re-fitted at each reference point, mode chosen on
  the training weeks), ``ridge-window`` and ``pls-window`` (linear models on the LSTM's window). Full runs add the
  same at 2 references a day (``refs_per_day`` field).
* ``cgm-nir-sim`` (SIMULATION driven by the real CGM glucose): 39-channel NIR spectra with every temporal effect on
  (ISF lag, drift, temperature, hydration, contact/motion artifacts, per-subject optics); ``pls`` (single spectrum),
  ``pls-window`` (the stacked 30-minute window the LSTM sees), ``lstm``. Full runs add one row set per effect alone.
* ``simulated``: the synthetic-trace NIR simulator (as before). ``fermentation``: real mid-IR spectra (g/L, grids
  do not apply).

Fields: ``rmse`` (mg/dL; g/L for fermentation), ``mard`` (%), ``clarke_a``/``clarke_ab`` (%), ``bytes`` (PLS /
linear: float32 coefficients; LSTM: :func:`prunequant.analysis.report` bytes, sparse + low-bit aware, plus fixed
buffers), ``macs`` (per reading). ``compressed-lstm`` rows are evaluated from the saved file (``file_bytes``).

    .venv/bin/python benchmarks/glucose.py --quick   # reduced sizes, < 3 min on the shared 2-core machine
    .venv/bin/python benchmarks/glucose.py           # benchmark sizes + effect ablation + 2 refs/day

Last stdout line: {"benchmark": "glucose", "rows": [...], "goals": {...}, "seconds": ...}.
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

from prunequant.apps.glucose.cgm import load_cgm_record
from prunequant.apps.glucose.cgm_sim import EFFECTS
from prunequant.apps.glucose.data import SpectralAugmentation
from prunequant.apps.glucose.experiments import (
    CGMNIRRecipe,
    CGMRecipe,
    FermentationRecipe,
    SimulatedRecipe,
    run_cgm_isig,
    run_cgm_nir,
    run_fermentation,
    run_simulated,
)
from prunequant.apps.glucose.pipeline import CompressSettings, TrainSettings

KEEP = ("dataset", "model", "rmse", "mard", "clarke_a", "clarke_ab", "bytes", "macs", "effective_macs", "file_bytes",
        "file_format", "evaluated_from_file", "parkes_ab", "iso15197_within_15", "n", "refs_per_day", "effects",
        "n_components", "sparsity", "calibration", "seconds")


# the per-effect ablation runs at reduced sizes (8 simulations): 40 one-day wearers, 6 epochs
ABLATION = {"chunk_days": 1.0, "max_subjects": {"train": 40, "val": 6, "test": 16}, "pls_max_components": 40,
            "train": TrainSettings(epochs=6, lr=3e-3, batch_size=128)}


def _clean(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def recipes(quick: bool):
    if not quick:
        return CGMRecipe(), CGMNIRRecipe(), SimulatedRecipe(), FermentationRecipe()
    short = CompressSettings(sparsity=0.85, prune_epochs=1, finetune_epochs=1)
    cgm = replace(CGMRecipe(), sparse_hours=None, train_stride=3,
                  train=TrainSettings(epochs=3, lr=3e-3, batch_size=256, loss="relative"),
                  compress=replace(short, sparsity=0.8, exclude=("head",)))
    nir = replace(CGMNIRRecipe(), max_subjects={"train": 60, "val": 4, "test": 10}, pls_max_components=40,
                  pls_stride=4, train=TrainSettings(epochs=5, lr=3e-3, batch_size=128), compress=short)
    sim = replace(SimulatedRecipe(), n_train=24, n_val=2, n_test=3, pls_max_components=30,
                  model={"snv": True, "project": 16, "hidden1": 32, "hidden2": 16},
                  train=TrainSettings(epochs=5, lr=3e-3), compress=short)
    ferm = replace(FermentationRecipe(), augmentation=SpectralAugmentation(n=600),
                   train=TrainSettings(epochs=8, lr=3e-3),
                   compress=CompressSettings(sparsity=0.7, prune_epochs=1, finetune_epochs=1, exclude=("head",)))
    return cgm, nir, sim, ferm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes (< 3 min)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/glucose"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma list of datasets to run (default: all four)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    only = set(filter(None, args.only.split(","))) or {"cgm-isig", "cgm-nir-sim", "simulated", "fermentation"}
    cgm_r, nir_r, sim_r, ferm_r = recipes(args.quick)
    rows, timing = [], {}
    record = load_cgm_record() if only & {"cgm-isig", "cgm-nir-sim"} else None
    if "cgm-isig" in only:
        console.rule("[bold]cgm-isig: real CGM record, sensor current -> device glucose")
        t = time.perf_counter()
        rows += run_cgm_isig(cgm_r, out=args.out, console=console, record=record)["rows"]
        timing["cgm-isig"] = round(time.perf_counter() - t, 1)
    if "cgm-nir-sim" in only:
        console.rule("[bold]cgm-nir-sim: NIR simulated from the real CGM glucose, temporal effects on")
        t = time.perf_counter()
        rows += run_cgm_nir(nir_r, out=args.out, console=console, record=record)["rows"]
        if not args.quick:  # which effects make the LSTM win: each effect alone, and none
            for eff in ("none", *EFFECTS, "all"):
                on = {e: (eff == "all" or e == eff) for e in EFFECTS}
                r = replace(nir_r, effects=on, compress_model=False, **ABLATION)
                rows += run_cgm_nir(r, console=console, record=record, dataset="cgm-nir-sim-ablation")["rows"]
        timing["cgm-nir-sim"] = round(time.perf_counter() - t, 1)
    if "simulated" in only:
        console.rule("[bold]simulated: synthetic glucose traces")
        t = time.perf_counter()
        rows += run_simulated(sim_r, out=args.out, console=console)["rows"]
        timing["simulated"] = round(time.perf_counter() - t, 1)
    if "fermentation" in only:
        console.rule("[bold]fermentation (real mid-IR spectra, g/L)")
        t = time.perf_counter()
        rows += run_fermentation(ferm_r, out=args.out, console=console,
                                 seeds=None if args.quick else (1, 2))["rows"]
        timing["fermentation"] = round(time.perf_counter() - t, 1)
    rows = [{k: _clean(r[k]) for k in KEEP if k in r} for r in rows]

    def get(ds, model, **kw):
        return next((r for r in rows if r["dataset"] == ds and r["model"] == model
                     and all(r.get(k) == v for k, v in kw.items())), None)

    goals = {}
    c_l, c_cal, c_c = get("cgm-isig", "lstm", refs_per_day=4), get("cgm-isig", "linear-calibration", refs_per_day=4), \
        get("cgm-isig", "compressed-lstm")
    if c_l:
        goals["cgm_isig_lstm_mard_below_linear_calibration"] = c_l["mard"] < c_cal["mard"]
        goals["cgm_isig_lstm_clarke_ab_ge_99"] = c_l["clarke_ab"] >= 99.0
        goals["cgm_isig_compressed_le_16kb"] = c_c["bytes"] <= 16 * 1024
        goals["cgm_isig_compressed_mard_within_0.5"] = c_c["mard"] - c_l["mard"] <= 0.5
    n_l, n_p, n_w, n_c = (get("cgm-nir-sim", m) for m in ("lstm", "pls", "pls-window", "compressed-lstm"))
    if n_l:
        goals["cgm_nir_lstm_mard_below_pls"] = n_l["mard"] < n_p["mard"]
        goals["cgm_nir_lstm_mard_below_pls_window"] = n_l["mard"] < n_w["mard"]
        goals["cgm_nir_compressed_le_16kb"] = n_c["bytes"] <= 16 * 1024
        goals["cgm_nir_compressed_mard_within_0.5"] = n_c["mard"] - n_l["mard"] <= 0.5
    abl = [r for r in rows if r["dataset"] == "cgm-nir-sim-ablation"]
    if abl:
        wins = {}
        for eff in sorted({r["effects"] for r in abl}):
            m = {r["model"]: r["mard"] for r in abl if r["effects"] == eff}
            wins[eff] = {"lstm_beats_pls": m["lstm"] < m["pls"], "lstm_beats_pls_window": m["lstm"] < m["pls-window"]}
        goals["cgm_nir_effect_alone_lstm_wins"] = wins
    result = {"benchmark": "glucose", "quick": args.quick, "rows": rows, "goals": goals, "timing_s": timing,
              "plots": sorted(str(p) for p in args.out.glob("*.png")),
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"glucose_{'quick' if args.quick else 'full'}.json").write_text(json.dumps(result, indent=1))
    for r in rows:
        console.print(f"{r['dataset']:>20} {r['model']:<18} {r.get('effects') or r.get('refs_per_day') or '':<10} "
                      f"rmse {r['rmse']:8.3f}  mard {r['mard']}  A {r['clarke_a']}  A+B {r['clarke_ab']}  "
                      f"bytes {r['bytes']:,}  macs {r['macs']}")
    console.print(goals)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

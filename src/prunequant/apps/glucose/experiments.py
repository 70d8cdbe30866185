"""The two end-to-end glucose experiments (used by ``benchmarks/glucose.py``, the CLI and the demo).

* :func:`run_simulated`: held-out simulated subjects; the LSTM reads 30-minute windows (6 readings) of a
  39-channel wearable spectrometer (1000–2500 nm in 40-nm bins) — time-series mode; PLS gets the same windows;
  then the LSTM is pruned (analytic threshold) and quantized (PWLQ).
* :func:`run_fermentation`: real mid-IR spectra, 21 lab standards → 34 HPLC points of a fermentation run; the LSTM
  reads each spectrum along wavenumber — spectrum mode; PLS on the standards, and PLS on the same augmented set.

Every number comes from a run in the same call (baselines included); seeds are fixed.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import SpectralAugmentation, fermentation_set
from .metrics import GlucoseMetrics, evaluate_predictions
from .model import GlucoseLSTM
from .pipeline import CompressSettings, TrainSettings, compress_glucose, fit_glucose, predict, size_report
from .pls import PLSBaseline
from .preprocess import SpectralPreprocessing
from .simulate import SimulatorConfig, simulate_cohort


@dataclass
class SimulatedRecipe:
    """Settings of the simulated experiment (defaults = what the benchmark reports)."""

    n_train: int = 128
    n_val: int = 8
    n_test: int = 16
    train_days: float = 0.5
    test_days: float = 1.0
    window: int = 6
    simulator: dict = field(default_factory=lambda: {"wl_step": 40.0})
    model: dict = field(default_factory=lambda: {"snv": True, "project": 24, "hidden1": 48, "hidden2": 24})
    train: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=10, lr=3e-3))
    compress: CompressSettings = field(default_factory=lambda: CompressSettings(
        sparsity=0.85, prune_epochs=8, finetune_epochs=8))
    pls_max_components: int = 60
    pls_stride: int = 3          # PLS fits every 3rd window (neighbours share 5 of 6 readings) to stay fast
    seed: int = 0


@dataclass
class FermentationRecipe:
    region: tuple[float, float] = (950.0, 1550.0)
    preprocessing: SpectralPreprocessing = field(default_factory=lambda: SpectralPreprocessing(
        linear_correction=True, sg_window=15, sg_polyorder=2, sg_deriv=1))
    augmentation: SpectralAugmentation = field(default_factory=SpectralAugmentation)
    model: dict = field(default_factory=lambda: {"pool": 4, "chunk": 8, "hidden1": 32, "hidden2": 16})
    train: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=30, lr=3e-3))
    compress: CompressSettings = field(default_factory=lambda: CompressSettings(
        sparsity=0.7, prune_epochs=8, finetune_epochs=8, exclude=("head",)))
    pls_max_components: int = 10
    pls_aug_max_components: int = 30
    folds: int = 7
    seed: int = 0


def _row(dataset: str, model: str, m: GlucoseMetrics, size: dict | int, **extra) -> dict[str, Any]:
    size = {"bytes": size} if isinstance(size, int) else size
    r = {"dataset": dataset, "model": model, "rmse": m.rmse, "mard": m.mard, "clarke_a": m.clarke_a,
         "clarke_ab": m.clarke_ab, "size_bytes": size["bytes"], "mae": m.mae, "r2": m.r2, "n": m.n}
    if m.parkes is not None:
        r["parkes_ab"] = m.parkes["A"] + m.parkes["B"]
        r["iso15197_within_15"] = m.iso15197["within_15"]
    for k in ("bytes_dense", "macs", "effective_macs", "params", "nonzeros"):
        if k in size:
            r[k] = size[k]
    r.update(extra)
    return r


def _log(console, msg: str) -> None:
    if console is not None:
        console.print(msg)


def run_simulated(recipe: SimulatedRecipe | None = None, out: str | Path | None = None, console=None,
                  progress: bool = False) -> dict[str, Any]:
    """LSTM vs PLS on held-out simulated subjects, then the compressed LSTM. Returns rows + predictions."""
    r = recipe or SimulatedRecipe()
    t0 = time.perf_counter()
    sim = SimulatorConfig(days=r.train_days, **r.simulator)
    ids = np.cumsum([0, r.n_train, r.n_val])
    train_c = simulate_cohort(range(ids[0], ids[1]), sim, r.seed, progress)
    val_c = simulate_cohort(range(ids[1], ids[2]), sim, r.seed, progress)
    test_c = simulate_cohort(range(100_000, 100_000 + r.n_test), SimulatorConfig(days=r.test_days, **r.simulator),
                             r.seed, progress)  # test ids far from train/val ids: subjects never overlap
    xtr, ytr, gtr = train_c.windows(r.window)
    xva, yva, _ = val_c.windows(r.window)
    xte, yte, gte = test_c.windows(r.window)
    _log(console, f"simulated {r.n_train}/{r.n_val}/{r.n_test} subjects, windows {xtr.shape} "
                  f"({time.perf_counter() - t0:.1f}s)")
    rows, preds = [], {}

    t = time.perf_counter()
    pls = PLSBaseline(SpectralPreprocessing(snv=bool(r.model.get("snv", False))), r.pls_max_components,
                      seed=r.seed).fit(xtr[::r.pls_stride], ytr[::r.pls_stride], groups=gtr[::r.pls_stride])
    preds["pls"] = pls.predict(xte)
    rows.append(_row("simulated", "pls", evaluate_predictions(yte, preds["pls"]), pls.size_bytes,
                     n_components=pls.n_components, max_components=r.pls_max_components,
                     seconds=round(time.perf_counter() - t, 1)))
    _log(console, f"PLS ({pls.n_components} components): MARD {rows[-1]['mard']:.2f}%")

    t = time.perf_counter()
    torch.manual_seed(r.seed)
    model = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], **r.model)
    train = TrainSettings(**{**asdict(r.train), "seed": r.seed, "progress": progress})
    history = fit_glucose(model, xtr, ytr, xva, yva, train)
    preds["lstm"] = predict(model, xte)
    example = model.example_input(steps=r.window)
    rows.append(_row("simulated", "lstm", evaluate_predictions(yte, preds["lstm"]), size_report(model, example),
                     seconds=round(time.perf_counter() - t, 1)))
    _log(console, f"LSTM: MARD {rows[-1]['mard']:.2f}%, {rows[-1]['size_bytes']:,} bytes")

    t = time.perf_counter()
    small, outcome = compress_glucose(model, xtr, ytr, xva, yva, r.compress, train)
    preds["lstm_compressed"] = predict(small, xte)
    rows.append(_row("simulated", "lstm_compressed", evaluate_predictions(yte, preds["lstm_compressed"]),
                     size_report(small, example), sparsity=outcome.prune.sparsity,
                     seconds=round(time.perf_counter() - t, 1)))
    _log(console, f"compressed LSTM: MARD {rows[-1]['mard']:.2f}%, {rows[-1]['size_bytes']:,} bytes")
    result = {"rows": rows, "y_test": yte, "subject_test": gte, "predictions": preds, "model": model,
              "compressed": small, "history": history, "window": r.window, "test": test_c}
    if out is not None:
        plot_simulated(result, out)
    return result


def plot_simulated(result: dict[str, Any], out: str | Path) -> list[Path]:
    from .plots import plot_clarke, plot_parkes, plot_time_series

    out = Path(out)
    y, p = result["y_test"], result["predictions"]
    files = [plot_clarke(y, p["lstm"], out / "simulated_clarke.png", "Clarke grid: LSTM, held-out simulated subjects"),
             plot_parkes(y, p["lstm"], out / "simulated_parkes.png", "Parkes grid (type 1): LSTM, simulated")]
    subj = result["subject_test"]
    first = subj == subj[0]
    t_h = (np.arange(first.sum()) + result["window"] - 1) * 5.0 / 60.0
    files.append(plot_time_series(t_h, y[first], p["lstm"][first], out / "simulated_time.png", "mg/dL",
                                  f"simulated subject {subj[0]}: blood glucose vs predictions",
                                  extra={"compressed LSTM": p["lstm_compressed"][first], "PLS": p["pls"][first]},
                                  label="LSTM"))
    return files


def run_fermentation(recipe: FermentationRecipe | None = None, out: str | Path | None = None, console=None,
                     progress: bool = False, seeds: tuple[int, ...] | None = None,
                     compress: bool = True) -> dict[str, Any]:
    """LSTM (spectrum mode, augmented standards) vs PLS on the real fermentation test points.

    ``seeds``: extra training seeds for the LSTM whose test RMSEs are reported alongside (spread over seeds);
    ``compress=False`` skips the compressed row (and the plot, which shows it)."""
    r = recipe or FermentationRecipe()
    data = fermentation_set(r.region)
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    rows, preds = [], {}

    pls = PLSBaseline(r.preprocessing, r.pls_max_components, folds=r.folds, seed=r.seed).fit(xtr, ytr)
    preds["pls"] = pls.predict(xte)
    rows.append(_row("fermentation", "pls", evaluate_predictions(yte, preds["pls"], clinical=False),
                     pls.size_bytes, n_components=pls.n_components))
    _log(console, f"PLS ({pls.n_components} components): RMSE {rows[-1]['rmse']:.2f} g/L")
    pls_aug = PLSBaseline(r.preprocessing, r.pls_aug_max_components, folds=r.folds, seed=r.seed).fit(
        xtr, ytr, augment=r.augmentation)
    preds["pls_augmented"] = pls_aug.predict(xte)
    rows.append(_row("fermentation", "pls_augmented",
                     evaluate_predictions(yte, preds["pls_augmented"], clinical=False), pls_aug.size_bytes,
                     n_components=pls_aug.n_components))
    _log(console, f"PLS on augmented standards ({pls_aug.n_components} components): RMSE {rows[-1]['rmse']:.2f} g/L")

    pre = r.preprocessing
    model_kw = dict(linear_correction=pre.linear_correction, snv=pre.snv, sg_window=pre.sg_window,
                    sg_polyorder=pre.sg_polyorder, sg_deriv=pre.sg_deriv, **r.model)

    def train_one(seed: int):
        xa, ya = r.augmentation(xtr, ytr, seed)
        torch.manual_seed(seed)
        m = GlucoseLSTM("spectrum", length=xtr.shape[1], **model_kw)
        ts = TrainSettings(**{**asdict(r.train), "seed": seed, "progress": progress})
        fit_glucose(m, xa[..., None], ya, settings=ts)
        return m, xa, ya, ts

    t = time.perf_counter()
    model, xa, ya, ts = train_one(r.seed)
    preds["lstm"] = predict(model, xte[..., None])
    example = model.example_input()
    extra = {"seconds": round(time.perf_counter() - t, 1)}
    if seeds:
        extra["rmse_other_seeds"] = [evaluate_predictions(yte, predict(train_one(s)[0], xte[..., None]),
                                                          clinical=False).rmse for s in seeds]
    rows.append(_row("fermentation", "lstm", evaluate_predictions(yte, preds["lstm"], clinical=False),
                     size_report(model, example), **extra))
    _log(console, f"LSTM: RMSE {rows[-1]['rmse']:.2f} g/L, {rows[-1]['size_bytes']:,} bytes")

    if not compress:
        return {"rows": rows, "y_test": yte, "predictions": preds, "model": model, "data": data, "pls": pls}
    t = time.perf_counter()
    small, outcome = compress_glucose(model, xa[..., None], ya, None, None, r.compress, ts)
    preds["lstm_compressed"] = predict(small, xte[..., None])
    rows.append(_row("fermentation", "lstm_compressed",
                     evaluate_predictions(yte, preds["lstm_compressed"], clinical=False),
                     size_report(small, example), sparsity=outcome.prune.sparsity,
                     seconds=round(time.perf_counter() - t, 1)))
    _log(console, f"compressed LSTM: RMSE {rows[-1]['rmse']:.2f} g/L, {rows[-1]['size_bytes']:,} bytes")
    result = {"rows": rows, "y_test": yte, "predictions": preds, "model": model, "compressed": small,
              "data": data, "pls": pls}
    if out is not None:
        plot_fermentation(result, out)
    return result


def plot_fermentation(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Predictions over the whole fermentation run (every on-line spectrum) with the HPLC references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = result["data"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stream = data.x_stream
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(data.stream_time_h, predict(result["model"], stream[..., None]), lw=0.8, label="LSTM")
    ax.plot(data.stream_time_h, predict(result["compressed"], stream[..., None]), lw=0.8, label="compressed LSTM")
    ax.plot(data.stream_time_h, result["pls"].predict(stream), lw=0.8, label="PLS")
    ax.plot(data.test_time_h, data.y_test, "ko", ms=4, label="HPLC reference")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("glucose (g/L)")
    ax.set_title("fermentation run: glucose from each on-line mid-IR spectrum")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = out / "fermentation_time.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [path]

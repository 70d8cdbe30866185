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

__all__ = ["CGMNIRRecipe", "CGMRecipe", "FermentationRecipe", "SimulatedRecipe", "run_cgm_isig", "run_cgm_nir",
           "run_fermentation", "run_simulated"]


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
         "clarke_ab": m.clarke_ab, "bytes": size["bytes"], "macs": size.get("macs"), "size_bytes": size["bytes"],
         "mae": m.mae, "r2": m.r2, "n": m.n}
    if m.parkes is not None:
        r["parkes_ab"] = m.parkes["A"] + m.parkes["B"]
        r["iso15197_within_15"] = m.iso15197["within_15"]
    for k in ("tensor_bytes", "bytes_dense", "effective_macs", "params", "nonzeros"):
        if k in size:
            r[k] = size[k]
    r.update(extra)
    return r


def _pls_size(pls: PLSBaseline, steps: int) -> dict:
    """PLS inference cost: float32 bytes of regression vector + mean + intercept; one MAC per input feature."""
    return {"bytes": pls.size_bytes, "macs": int(pls.model.coef_.size) if pls.model is not None else 0}


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
    pls1 = PLSBaseline(SpectralPreprocessing(snv=bool(r.model.get("snv", False))), min(40, r.pls_max_components),
                       seed=r.seed).fit(xtr[::r.pls_stride, -1], ytr[::r.pls_stride], groups=gtr[::r.pls_stride])
    preds["pls-single"] = pls1.predict(xte[:, -1])
    rows.append(_row("simulated", "pls", evaluate_predictions(yte, preds["pls-single"]), _pls_size(pls1, 1),
                     n_components=pls1.n_components, seconds=round(time.perf_counter() - t, 1)))
    _log(console, f"PLS on single spectra ({pls1.n_components} components): MARD {rows[-1]['mard']:.2f}%")

    t = time.perf_counter()
    pls = PLSBaseline(SpectralPreprocessing(snv=bool(r.model.get("snv", False))), r.pls_max_components,
                      seed=r.seed).fit(xtr[::r.pls_stride], ytr[::r.pls_stride], groups=gtr[::r.pls_stride])
    preds["pls"] = pls.predict(xte)
    rows.append(_row("simulated", "pls-window", evaluate_predictions(yte, preds["pls"]), _pls_size(pls, r.window),
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
    preds["compressed-lstm"] = predict(small, xte)
    rows.append(_row("simulated", "compressed-lstm", evaluate_predictions(yte, preds["compressed-lstm"]),
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
                                  extra={"compressed LSTM": p["compressed-lstm"][first], "PLS": p["pls"][first]},
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
                     _pls_size(pls, 1), n_components=pls.n_components))
    _log(console, f"PLS ({pls.n_components} components): RMSE {rows[-1]['rmse']:.2f} g/L")
    pls_aug = PLSBaseline(r.preprocessing, r.pls_aug_max_components, folds=r.folds, seed=r.seed).fit(
        xtr, ytr, augment=r.augmentation)
    preds["pls-augmented"] = pls_aug.predict(xte)
    rows.append(_row("fermentation", "pls-augmented",
                     evaluate_predictions(yte, preds["pls-augmented"], clinical=False), _pls_size(pls_aug, 1),
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
    preds["compressed-lstm"] = predict(small, xte[..., None])
    rows.append(_row("fermentation", "compressed-lstm",
                     evaluate_predictions(yte, preds["compressed-lstm"], clinical=False),
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
    from .plots import _figure, _save

    data = result["data"]
    out = Path(out)
    stream = data.x_stream
    fig, ax = _figure((9, 3.5))
    ax.plot(data.stream_time_h, predict(result["model"], stream[..., None]), lw=0.8, label="LSTM")
    ax.plot(data.stream_time_h, predict(result["compressed"], stream[..., None]), lw=0.8, label="compressed LSTM")
    ax.plot(data.stream_time_h, result["pls"].predict(stream), lw=0.8, label="PLS")
    ax.plot(data.test_time_h, data.y_test, "ko", ms=4, label="HPLC reference")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("glucose (g/L)")
    ax.set_title("fermentation run: glucose from each on-line mid-IR spectrum")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return [_save(fig, out / "fermentation_time.png")]


# ------------------------------------------------------------------------------------------ real CGM record
@dataclass
class CGMRecipe:
    """Real CGM record: sensor current → the device's glucose (see :mod:`.cgm`). Defaults = the benchmark's."""

    window: int = 12                                   # 1 hour of 5-minute readings
    hours: tuple[float, ...] = (7.0, 12.0, 18.0, 22.0)  # reference points: 4 finger sticks a day
    sparse_hours: tuple[float, ...] | None = (7.0, 19.0)  # also report 2 a day (None: skip)
    hidden1: int = 32
    hidden2: int = 16
    train: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=5, lr=3e-3, batch_size=256,
                                                                       loss="relative"))
    train_stride: int = 2
    compress: CompressSettings = field(default_factory=lambda: CompressSettings(
        sparsity=0.8, prune_epochs=3, finetune_epochs=3, exclude=("head",)))
    seed: int = 0


def _window_linear(kind: str, xtr, ytr, xva, yva, xte) -> tuple[np.ndarray, dict]:
    """Ridge or PLS on the flattened window (all channels but the base), fitted on the relative deviation from the
    base channel (the calibrated value) like the LSTM; ridge alpha / PLS components chosen on validation MARD."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import Ridge

    def feats(x):
        return np.asarray(x, dtype=np.float64)[:, :, 1:].reshape(len(x), -1)

    f = feats(xtr)
    mu, sd = f.mean(0), f.std(0) + 1e-9
    z = lambda x: (feats(x) - mu) / sd
    target = np.asarray(ytr) / np.asarray(xtr)[:, -1, 0] - 1.0
    if kind == "ridge":
        grid = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
        models = {g: Ridge(alpha=g).fit(z(xtr), target).predict for g in grid}
    else:  # one fit with k_max components; every k by truncating the rotations (as in PLSBaseline)
        pls = PLSRegression(n_components=min(16, f.shape[1]), scale=False).fit(z(xtr), target)
        grid = tuple(range(1, pls.n_components + 1))

        def trunc(k):
            coef = pls.x_rotations_[:, :k] @ pls.y_loadings_[:, :k].T
            return lambda zz: (zz - pls._x_mean) @ coef + pls._y_mean
        models = {k: trunc(k) for k in grid}
    best = None
    for g in grid:
        pv = np.asarray(xva)[:, -1, 0] * (1.0 + np.ravel(models[g](z(xva))))
        score = float(np.mean(np.abs(pv - yva) / yva))
        if best is None or score < best[0]:
            best = (score, g)
    pred = np.asarray(xte)[:, -1, 0] * (1.0 + np.ravel(models[best[1]](z(xte))))
    return pred, {"alpha" if kind == "ridge" else "n_components": best[1], "bytes": (f.shape[1] * 3 + 1) * 4,
                  "macs": int(f.shape[1])}


def _compress_and_reload(model, xtr, ytr, xva, yva, settings: CompressSettings, train: TrainSettings,
                         path: Path | None):
    """Compress with the project's methods, write the packed ``.pq`` file (``prunequant.save``; falls back to
    ``prunequant.io.save`` if the packed format refuses the model) and load it back; the returned model is the one
    read from the file. Returns (compressed, outcome, model from file, file bytes, format)."""
    from ... import load as pq_load
    from ... import save as pq_save
    from ...errors import PrunequantError
    from ...io import load, save

    small, outcome = compress_glucose(model, xtr, ytr, xva, yva, settings, train)
    if path is None:
        return small, outcome, small, None, None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = pq_save(small, path.with_suffix(".pq"))
        return small, outcome, pq_load(res.path), int(res.file_bytes), "pq"
    except PrunequantError:
        save(small, path, metadata={"app": "glucose", "compression": asdict(settings)})
        return small, outcome, load(path), path.stat().st_size, "safetensors"


def run_cgm_isig(recipe: CGMRecipe | None = None, out: str | Path | None = None, console=None,
                 progress: bool = False, record=None) -> dict[str, Any]:
    """Real CGM record: linear calibration (re-fitted at each reference point), ridge and PLS on the window, the
    two-LSTM model and its compressed version (saved, reloaded, evaluated from the file). Time split."""
    from .cgm import load_cgm_record, prepare_cgm

    r = recipe or CGMRecipe()
    t0 = time.perf_counter()
    rec = record if record is not None else load_cgm_record()
    rows, preds = [], {}
    result: dict[str, Any] = {"rows": rows, "predictions": preds}
    settings = [(r.hours, True)] + ([(r.sparse_hours, False)] if r.sparse_hours else [])
    for hours, main in settings:
        task = prepare_cgm(rec, window=r.window, hours=hours, train_stride=r.train_stride)
        w = task.windows
        tr, va, te = w["train"], w["val"], w["test"]
        extra = {"refs_per_day": len(hours), "calibration": f"{task.calibration.mode}, last {task.calibration.n_refs}"
                 f" refs, offset {task.calibration.offset:g} nA"}
        key = "" if main else f"@{len(hours)}/day"
        if main:
            _log(console, f"CGM record: {len(rec):,} readings; windows train {len(tr.y):,} / val {len(va.y):,} / "
                          f"test {len(te.y):,}; {len(task.refs)} reference points ({len(hours)}/day) "
                          f"({time.perf_counter() - t0:.1f}s)")
        preds["linear-calibration" + key] = te.calibrated
        rows.append(_row("cgm-isig", "linear-calibration", evaluate_predictions(te.y, te.calibrated),
                         {"bytes": 8, "macs": 1}, **extra))
        _log(console, f"linear calibration{key}: MARD {rows[-1]['mard']:.2f}%, Clarke A+B {rows[-1]['clarke_ab']:.2f}%")
        if main:
            for kind in ("ridge", "pls"):
                p, info = _window_linear(kind, tr.x, tr.y, va.x, va.y, te.x)
                preds[f"{kind}-window"] = p
                rows.append(_row("cgm-isig", f"{kind}-window", evaluate_predictions(te.y, p),
                                 {"bytes": info.pop("bytes"), "macs": info.pop("macs")}, **extra, **info))
                _log(console, f"{kind} on the window: MARD {rows[-1]['mard']:.2f}%")
        t = time.perf_counter()
        torch.manual_seed(r.seed)
        model = GlucoseLSTM("timeseries", in_channels=tr.x.shape[-1], hidden1=r.hidden1, hidden2=r.hidden2,
                            base_channel=0)
        train = TrainSettings(**{**asdict(r.train), "seed": r.seed, "progress": progress})
        fit_glucose(model, tr.x, tr.y, va.x, va.y, train)
        preds["lstm" + key] = predict(model, te.x)
        example = model.example_input(steps=r.window)
        rows.append(_row("cgm-isig", "lstm", evaluate_predictions(te.y, preds["lstm" + key]),
                         size_report(model, example), seconds=round(time.perf_counter() - t, 1), **extra))
        _log(console, f"LSTM{key}: MARD {rows[-1]['mard']:.2f}%, Clarke A+B {rows[-1]['clarke_ab']:.2f}%, "
                      f"{rows[-1]['bytes']:,} bytes")
        if not main:
            continue
        t = time.perf_counter()
        path = None if out is None else Path(out) / "cgm_isig_compressed.safetensors"
        small, outcome, loaded, file_bytes, fmt = _compress_and_reload(model, tr.x, tr.y, va.x, va.y, r.compress,
                                                                      train, path)
        preds["compressed-lstm"] = predict(loaded, te.x)
        rows.append(_row("cgm-isig", "compressed-lstm", evaluate_predictions(te.y, preds["compressed-lstm"]),
                         size_report(small, example), sparsity=outcome.prune.sparsity, file_bytes=file_bytes,
                         file_format=fmt,
                         evaluated_from_file=path is not None, seconds=round(time.perf_counter() - t, 1), **extra))
        _log(console, f"compressed LSTM: MARD {rows[-1]['mard']:.2f}%, {rows[-1]['bytes']:,} bytes")
        t_h = (te.time - te.time[0]).astype("timedelta64[s]").astype(np.float64) / 3600.0
        result.update({"y_test": te.y, "time_h": t_h, "model": model, "compressed": loaded, "task": task})
    if out is not None:
        plot_cgm_isig(result, out)
    return result


def plot_cgm_isig(result: dict[str, Any], out: str | Path) -> list[Path]:
    from .plots import plot_clarke, plot_parkes, plot_time_series

    out = Path(out)
    y, p, t = result["y_test"], result["predictions"], result["time_h"]
    first = t < 72.0  # the first three days of the test weeks
    return [plot_clarke(y, p["lstm"], out / "cgm_isig_clarke.png", "Clarke grid: LSTM, real CGM record (test weeks)"),
            plot_parkes(y, p["lstm"], out / "cgm_isig_parkes.png", "Parkes grid (type 1): LSTM, real CGM record"),
            plot_time_series(t[first], y[first], p["lstm"][first], out / "cgm_isig_time.png", "mg/dL",
                             "real CGM record: device glucose vs predictions from the sensor current",
                             extra={"linear calibration": p["linear-calibration"][first],
                                    "compressed LSTM": p["compressed-lstm"][first]}, label="LSTM")]


# ------------------------------------------------------------------------------------------ CGM-driven NIR simulator
@dataclass
class CGMNIRRecipe:
    """NIR simulator driven by the real CGM glucose, temporal effects on (see :mod:`.cgm_sim`)."""

    effects: dict = field(default_factory=dict)           # TemporalEffects overrides; {} = all effects on
    chunk_days: float = 0.5                               # each half day of the real record = one wearer
    max_subjects: dict = field(default_factory=lambda: {"train": 120, "val": 8, "test": 20})
    window: int = 6
    simulator: dict = field(default_factory=lambda: {"wl_step": 40.0})
    model: dict = field(default_factory=lambda: {"snv": True, "project": 24, "hidden1": 32, "hidden2": 16})
    train: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=10, lr=3e-3, batch_size=128))
    compress: CompressSettings = field(default_factory=lambda: CompressSettings(
        sparsity=0.85, prune_epochs=3, finetune_epochs=3))
    pls_max_components: int = 60
    pls_stride: int = 3
    compress_model: bool = True
    seed: int = 0


def run_cgm_nir(recipe: CGMNIRRecipe | None = None, out: str | Path | None = None, console=None,
                progress: bool = False, record=None, dataset: str = "cgm-nir-sim") -> dict[str, Any]:
    """PLS on single spectra, PLS on the stacked window, the two-LSTM model and (optionally) its compressed version
    on NIR spectra simulated from the real CGM glucose (time split: earlier weeks train, later weeks test)."""
    from .cgm import load_cgm_record
    from .cgm_sim import TemporalEffects, simulate_cgm_nir

    r = recipe or CGMNIRRecipe()
    t0 = time.perf_counter()
    rec = record if record is not None else load_cgm_record()
    effects = TemporalEffects(**r.effects)
    sets = simulate_cgm_nir(rec, effects, SimulatorConfig(**r.simulator), r.chunk_days,
                            max_subjects=r.max_subjects, seed=r.seed)
    xtr, ytr, gtr = sets["train"].windows(r.window)
    xva, yva, _ = sets["val"].windows(r.window, stride=3)
    xte, yte, gte = sets["test"].windows(r.window)
    tag = {"effects": ",".join(effects.active()) or "none"}
    _log(console, f"CGM-driven NIR simulation ({tag['effects']}): {len(sets['train'].glucose)}/"
                  f"{len(sets['val'].glucose)}/{len(sets['test'].glucose)} subjects, windows {xtr.shape} "
                  f"({time.perf_counter() - t0:.1f}s)")
    rows, preds = [], {}
    pre = SpectralPreprocessing(snv=bool(r.model.get("snv", False)))
    s = r.pls_stride
    pls1 = PLSBaseline(pre, r.pls_max_components, seed=r.seed).fit(xtr[::s, -1], ytr[::s], groups=gtr[::s])
    preds["pls"] = pls1.predict(xte[:, -1])
    rows.append(_row(dataset, "pls", evaluate_predictions(yte, preds["pls"]), _pls_size(pls1, 1),
                     n_components=pls1.n_components, **tag))
    plsw = PLSBaseline(pre, r.pls_max_components, seed=r.seed).fit(xtr[::s], ytr[::s], groups=gtr[::s])
    preds["pls-window"] = plsw.predict(xte)
    rows.append(_row(dataset, "pls-window", evaluate_predictions(yte, preds["pls-window"]),
                     _pls_size(plsw, r.window), n_components=plsw.n_components, **tag))
    _log(console, f"PLS single {rows[-2]['mard']:.2f}% ({pls1.n_components} comp.), window "
                  f"{rows[-1]['mard']:.2f}% ({plsw.n_components} comp.)")
    t = time.perf_counter()
    torch.manual_seed(r.seed)
    model = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], **r.model)
    train = TrainSettings(**{**asdict(r.train), "seed": r.seed, "progress": progress})
    fit_glucose(model, xtr, ytr, xva, yva, train)
    preds["lstm"] = predict(model, xte)
    example = model.example_input(steps=r.window)
    rows.append(_row(dataset, "lstm", evaluate_predictions(yte, preds["lstm"]), size_report(model, example),
                     seconds=round(time.perf_counter() - t, 1), **tag))
    _log(console, f"LSTM: MARD {rows[-1]['mard']:.2f}%, {rows[-1]['bytes']:,} bytes")
    result = {"rows": rows, "predictions": preds, "y_test": yte, "subject_test": gte, "model": model,
              "window": r.window}
    if r.compress_model:
        t = time.perf_counter()
        path = None if out is None else Path(out) / "cgm_nir_compressed.safetensors"
        small, outcome, loaded, file_bytes, fmt = _compress_and_reload(model, xtr, ytr, xva, yva, r.compress, train,
                                                                      path)
        preds["compressed-lstm"] = predict(loaded, xte)
        rows.append(_row(dataset, "compressed-lstm", evaluate_predictions(yte, preds["compressed-lstm"]),
                         size_report(small, example), sparsity=outcome.prune.sparsity, file_bytes=file_bytes,
                         file_format=fmt,
                         evaluated_from_file=path is not None, seconds=round(time.perf_counter() - t, 1), **tag))
        _log(console, f"compressed LSTM: MARD {rows[-1]['mard']:.2f}%, {rows[-1]['bytes']:,} bytes")
        result["compressed"] = loaded
        if out is not None:
            plot_cgm_nir(result, out)
    return result


def plot_cgm_nir(result: dict[str, Any], out: str | Path) -> list[Path]:
    from .plots import plot_clarke, plot_parkes, plot_time_series

    out = Path(out)
    y, p = result["y_test"], result["predictions"]
    subj = result["subject_test"]
    first = subj == subj[0]
    t_h = (np.arange(first.sum()) + result["window"] - 1) * 5.0 / 60.0
    return [plot_clarke(y, p["lstm"], out / "cgm_nir_clarke.png", "Clarke grid: LSTM, CGM-driven NIR simulation"),
            plot_parkes(y, p["lstm"], out / "cgm_nir_parkes.png", "Parkes grid (type 1): LSTM, CGM-driven NIR"),
            plot_time_series(t_h, y[first], p["lstm"][first], out / "cgm_nir_time.png", "mg/dL",
                             f"CGM-driven NIR simulation, test subject {subj[0]}",
                             extra={"PLS": p["pls"][first], "PLS window": p["pls-window"][first],
                                    **({"compressed LSTM": p["compressed-lstm"][first]}
                                       if "compressed-lstm" in p else {})}, label="LSTM")]

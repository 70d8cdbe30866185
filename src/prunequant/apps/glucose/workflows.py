"""Glucose application workflows: simulate, train, evaluate and compress; each returns a dataclass.

The CLI (``prunequant glucose ...``) only parses options, calls these and prints the results. Data sources:

* a recordings folder (``train.csv`` [``val.csv``] ``test.csv`` in the recordings CSV format of :mod:`.data`);
* the real fermentation spectra (``fermentation=True``);
* a CGM record (``cgm="bokeh"`` for the real record of ``bokeh-sampledata``, or the path of a CGM CSV with columns
  ``datetime,isig,glucose``, see :mod:`.cgm`).

Example::

    from prunequant.apps.glucose.workflows import train_cgm, evaluate_saved
    res = train_cgm(out="cgm_model", epochs=2)             # real CGM record, time split, 4 references a day
    print(res.evaluations["lstm"].metrics.mard, res.baselines["linear-calibration"]["mard"])
    ev = evaluate_saved("cgm_model/model.safetensors", cgm="bokeh")
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError, ShapeError
from .metrics import GlucoseMetrics, evaluate_predictions


@dataclass
class Evaluation:
    """One prediction set: metrics, references, predictions and (when known) the time of each in hours."""

    name: str
    metrics: GlucoseMetrics
    y: np.ndarray
    pred: np.ndarray
    unit: str = "mg/dL"
    clinical: bool = True
    time_h: np.ndarray | None = None
    plots: list[Path] = field(default_factory=list)


@dataclass
class TrainResult:
    model: Any
    meta: dict
    size: dict
    evaluations: dict[str, Evaluation]
    baselines: dict[str, dict]
    files: list[Path] = field(default_factory=list)


@dataclass
class CompressResult:
    model: Any
    before: Evaluation
    after: Evaluation
    size_before: dict
    size_after: dict
    sparsity: float
    settings: dict
    report: Any
    files: list[Path] = field(default_factory=list)
    packed: dict = field(default_factory=dict)     # the .pq file: path, bytes, identical predictions (or error)


@dataclass
class SimulateResult:
    summaries: list[str]
    files: list[Path]


# ------------------------------------------------------------------------------------------ plots
def write_plots(out: str | Path, ev: Evaluation) -> list[Path]:
    """Clarke and Parkes grids (clinical data) and the time-series plot of one evaluation."""
    from .plots import plot_clarke, plot_parkes, plot_time_series

    out = Path(out)
    files = []
    if ev.clinical:
        files += [plot_clarke(ev.y, ev.pred, out / f"{ev.name}_clarke.png", f"Clarke error grid: {ev.name}"),
                  plot_parkes(ev.y, ev.pred, out / f"{ev.name}_parkes.png", f"Parkes grid (type 1): {ev.name}")]
    if ev.time_h is not None:
        ok = np.isfinite(ev.time_h)
        files.append(plot_time_series(ev.time_h[ok], ev.y[ok], ev.pred[ok], out / f"{ev.name}_time.png", ev.unit,
                                      f"{ev.name}: predicted vs reference"))
    ev.plots = files
    return files


# ------------------------------------------------------------------------------------------ data sources
def _cgm_record(cgm: str):
    from .cgm import load_cgm_record

    return load_cgm_record(None if cgm in ("bokeh", "real", "") else cgm)


def model_inputs(model, meta: dict, split: str, data: str | Path | None = None, fermentation: bool = False,
                 cgm: str | None = None) -> tuple[np.ndarray, np.ndarray, bool, str, np.ndarray | None]:
    """(x, y, clinical, unit, time_h) of ``split`` from the chosen data source, shaped for ``model``."""
    from .data import fermentation_set, read_recordings_dir, recordings_inputs

    if cgm is None and meta.get("source") == "cgm" and data is None and not fermentation:
        cgm = meta.get("cgm", {}).get("path") or "bokeh"
    if cgm is not None:
        from .cgm import cgm_task_from_meta

        if meta.get("source") != "cgm":
            raise ConfigError("this model was not trained on a CGM record (no calibration settings stored)")
        task = cgm_task_from_meta(meta, _cgm_record(cgm))
        if split not in task.windows:
            raise ConfigError(f"the CGM split has no part {split!r}")
        w = task.windows[split]
        t = (w.time - w.time[0]).astype("timedelta64[s]").astype(np.float64) / 3600.0
        return w.x, w.y, True, "mg/dL", t
    if fermentation:
        d = fermentation_set(tuple(meta.get("region", (950.0, 1550.0))))
        x, y = (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)
        if x.shape[1] != model.length:
            raise ShapeError(f"the model reads {model.length} points, the fermentation region has {x.shape[1]}")
        return x[..., None], y, False, "g/L", None if split == "train" else d.test_time_h
    if data is None:
        raise ConfigError("give a recordings folder (data), fermentation=True or a CGM record (cgm)")
    data = Path(data)
    recs = read_recordings_dir(data)
    if split not in recs:
        raise ConfigError(f"{data} has no {split}.csv")
    rec = recs[split]
    x, y, rows = recordings_inputs(rec, model.mode, int(meta.get("window", 1)))
    if y is None:
        raise ShapeError(f"{data / (split + '.csv')} has no 'glucose' reference column")
    t = rec.time_min[rows] / 60.0 if rec.time_min is not None else np.arange(len(y)) * 5.0 / 60.0
    if rec.subject is not None:  # time plot: the first subject only
        t = np.where(rec.subject[rows] == rec.subject[rows][0], t, np.nan)
    return x, y, True, "mg/dL", t


def load_glucose_model(path: str | Path):
    """A saved glucose model and its metadata (raises ConfigError for another kind of model)."""
    from ...io import load
    from .model import GlucoseLSTM

    model = load(path)
    if not isinstance(model, GlucoseLSTM):
        raise ConfigError(f"{path} holds a {type(model).__name__}, not a glucose model")
    return model, dict(getattr(model, "prunequant_metadata", {}) or {})


def _save(model, path: Path, meta: dict) -> Path:
    from ...io import save

    path.parent.mkdir(parents=True, exist_ok=True)
    return save(model, path, metadata=meta)


def _write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------ simulate
def simulate_recordings(out: str | Path, train: int = 128, val: int = 8, test: int = 16, days: float = 0.5,
                        test_days: float = 1.0, grid: str = "full", wl_step: float = 40.0, noise: float = 2e-6,
                        seed: int = 0, progress: bool = False) -> SimulateResult:
    """Simulate NIR recordings (synthetic glucose traces) and write OUT/{train,val,test}.csv + plots."""
    from .data import write_recordings_csv
    from .plots import plot_spectra, plot_traces
    from .simulate import SimulatorConfig, simulate_cohort

    out = Path(out)
    cfgs = {"train": SimulatorConfig(grid=grid, wl_step=wl_step, noise_au=noise, days=days),
            "test": SimulatorConfig(grid=grid, wl_step=wl_step, noise_au=noise, days=test_days)}
    cfgs["val"] = cfgs["train"]
    ids = {"train": range(train), "val": range(train, train + val), "test": range(100_000, 100_000 + test)}
    cohorts, lines, files = {}, [], []
    for name in ("train", "val", "test"):
        if len(ids[name]) == 0:
            continue
        c = simulate_cohort(ids[name], cfgs[name], seed, progress)
        cohorts[name] = c
        s, t, ch = c.absorbance.shape
        files.append(write_recordings_csv(out / f"{name}.csv", c.wavelengths, c.absorbance.reshape(s * t, ch),
                                          y=c.glucose.reshape(-1), subject=np.repeat(c.subject_ids, t),
                                          time_min=np.tile(c.time_min, s)))
        lines.append(f"{name}: {s} subjects x {t} readings x {ch} channels, glucose "
                     f"{c.glucose.min():.0f}-{c.glucose.max():.0f} mg/dL -> {out / (name + '.csv')}")
    if "train" not in cohorts:
        raise ConfigError("simulate needs at least one training subject")
    c = cohorts["train"]
    files.append(plot_spectra(c.wavelengths, c.absorbance[0], out / "spectra.png", color_by=c.glucose[0],
                              title="simulated absorbance, subject 0 (colour: blood glucose mg/dL)"))
    files.append(plot_traces(c.time_min / 60.0, c.glucose, out / "traces.png", isf=c.isf_glucose))
    files.append(_write_json(out / "simulator.json", cfgs["train"].to_dict()))
    return SimulateResult(lines, files)


# ------------------------------------------------------------------------------------------ train
def train_from_recordings(data: str | Path, out: str | Path | None = None, window: int = 6, hidden1: int = 48,
                          hidden2: int = 24, project: int = 24, snv: bool = True, epochs: int = 10,
                          lr: float = 3e-3, seed: int = 0, progress: bool = False) -> TrainResult:
    """Two-LSTM model (time-series mode) on a recordings folder; PLS on the same windows; test metrics."""
    from .data import read_recordings_dir, recordings_inputs
    from .model import GlucoseLSTM
    from .pipeline import TrainSettings, fit_glucose, predict
    from .pls import PLSBaseline
    from .preprocess import SpectralPreprocessing

    data = Path(data)
    recs = read_recordings_dir(data)
    xtr, ytr, rtr = recordings_inputs(recs["train"], "timeseries", window)
    if ytr is None:
        raise ShapeError(f"{data}/train.csv has no 'glucose' column")
    xva = yva = None
    if "val" in recs:
        xva, yva, _ = recordings_inputs(recs["val"], "timeseries", window)
    torch.manual_seed(seed)
    model = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], hidden1=hidden1, hidden2=hidden2,
                        project=min(project, xtr.shape[-1]), snv=snv)
    fit_glucose(model, xtr, ytr, xva, yva, TrainSettings(epochs=epochs, lr=lr, seed=seed, progress=progress))
    meta = {"app": "glucose", "source": str(data), "mode": "timeseries", "window": window,
            "wavelengths": recs["train"].wavelengths.tolist(), "unit": "mg/dL", "clinical": True}
    evals, baselines = {}, {}
    if "test" in recs:
        xte, yte, _ = recordings_inputs(recs["test"], "timeseries", window)
        _, _, _, _, t_h = model_inputs(model, meta, "test", data=data)
        p = predict(model, xte)
        evals["lstm"] = Evaluation("lstm", evaluate_predictions(yte, p), yte, p, time_h=t_h)
        subj = recs["train"].subject
        groups = None if subj is None else subj[rtr][::3]
        pls = PLSBaseline(SpectralPreprocessing(snv=snv), 60).fit(xtr[::3], ytr[::3], groups)
        pp = pls.predict(xte)
        evals["pls"] = Evaluation("pls", evaluate_predictions(yte, pp), yte, pp, time_h=t_h)
        baselines["pls"] = {**evals["pls"].metrics.to_dict(), "n_components": pls.n_components}
    return _finish_train(model, meta, evals, baselines, out)


def train_fermentation(out: str | Path | None = None, epochs: int = 0, lr: float = 3e-3, seed: int = 0,
                       progress: bool = False) -> TrainResult:
    """Spectrum-mode model on the real fermentation standards (recipe of :mod:`.experiments`), PLS alongside."""
    from . import experiments as ex

    r = ex.FermentationRecipe()
    if epochs:
        r.train.epochs = epochs
    r.train.lr, r.seed = lr, seed
    res = ex.run_fermentation(r, out=None, progress=progress, compress=False)
    model = res["model"]
    meta = {"app": "glucose", "source": "fermentation", "mode": "spectrum", "region": list(r.region),
            "unit": "g/L", "clinical": False}
    d = res["data"]
    evals = {k: Evaluation(k, evaluate_predictions(res["y_test"], p, clinical=False), res["y_test"], p, "g/L",
                           False, d.test_time_h) for k, p in res["predictions"].items()}
    baselines = {row["model"]: row for row in res["rows"] if row["model"] != "lstm"}
    return _finish_train(model, meta, evals, baselines, out)


def train_cgm(cgm: str = "bokeh", out: str | Path | None = None, window: int = 12,
              hours: tuple[float, ...] | None = None, hidden1: int = 32, hidden2: int = 16, epochs: int = 5,
              lr: float = 3e-3, batch_size: int = 256, train_stride: int = 2, seed: int = 0,
              progress: bool = False) -> TrainResult:
    """Two LSTMs on a CGM record: sensor-current windows + the causal linear calibration from sparse reference
    points → the device's glucose; time split; the calibration baseline and ridge on the same windows alongside."""
    from .cgm import FINGERSTICK_HOURS, prepare_cgm
    from .model import GlucoseLSTM
    from .pipeline import TrainSettings, fit_glucose, predict

    task = prepare_cgm(_cgm_record(cgm), window=window, hours=tuple(hours or FINGERSTICK_HOURS),
                       train_stride=train_stride, path=None if cgm in ("bokeh", "real", "") else str(cgm))
    w = task.windows
    torch.manual_seed(seed)
    model = GlucoseLSTM("timeseries", in_channels=w["train"].x.shape[-1], hidden1=hidden1, hidden2=hidden2,
                        base_channel=0)
    fit_glucose(model, w["train"].x, w["train"].y, w["val"].x, w["val"].y,
                TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, loss="relative", seed=seed,
                              progress=progress))
    meta = {"app": "glucose", "mode": "timeseries", **task.meta()}
    te = w["test"]
    t_h = (te.time - te.time[0]).astype("timedelta64[s]").astype(np.float64) / 3600.0
    p = predict(model, te.x)
    evals = {"lstm": Evaluation("lstm", evaluate_predictions(te.y, p), te.y, p, time_h=t_h),
             "linear-calibration": Evaluation("linear-calibration", evaluate_predictions(te.y, te.calibrated), te.y,
                                              te.calibrated, time_h=t_h)}
    rp = ridge_window_baseline(w["train"].x, w["train"].y, te.x)
    evals["ridge-window"] = Evaluation("ridge-window", evaluate_predictions(te.y, rp), te.y, rp, time_h=t_h)
    baselines = {k: evals[k].metrics.to_dict() for k in ("linear-calibration", "ridge-window")}
    baselines["linear-calibration"]["calibration"] = meta["calibration"]
    return _finish_train(model, meta, evals, baselines, out)


def ridge_window_baseline(x_train, y_train, x_test, alpha: float = 1.0) -> np.ndarray:
    """Ridge on the flattened, standardised window (the linear model on the input the LSTM sees), fitted on the
    relative deviation from the window's base channel (channel 0, the calibrated value) like the LSTM."""
    from sklearn.linear_model import Ridge

    def feats(x):
        x = np.asarray(x, dtype=np.float64)
        return x[:, :, 1:].reshape(len(x), -1)

    f = feats(x_train)
    mu, sd = f.mean(0), f.std(0) + 1e-9
    base = np.asarray(x_train)[:, -1, 0]
    r = Ridge(alpha=alpha).fit((f - mu) / sd, np.asarray(y_train) / base - 1.0)
    xb = np.asarray(x_test)[:, -1, 0]
    return xb * (1.0 + r.predict((feats(x_test) - mu) / sd))


def _finish_train(model, meta, evals, baselines, out) -> TrainResult:
    from .pipeline import size_report

    size = size_report(model, model.example_input(steps=int(meta.get("window", 1))))
    res = TrainResult(model, meta, size, evals, baselines)
    if out is not None:
        out = Path(out)
        for ev in evals.values():
            res.files += write_plots(out, ev)
        res.files.append(_save(model, out / "model.safetensors", meta))
        res.files.append(_write_json(out / "metrics.json", {
            "metrics": {k: v.metrics.to_dict() for k, v in evals.items()}, "baselines": baselines, "size": size,
            "meta": meta}))
    return res


# ------------------------------------------------------------------------------------------ evaluate / compress
def evaluate_saved(model_path: str | Path, data: str | Path | None = None, fermentation: bool = False,
                   cgm: str | None = None, out: str | Path | None = None, split: str = "test") -> Evaluation:
    """Metrics (RMSE, MAE, MARD, R², Clarke, Parkes, ISO 15197) and plots of a saved model on one split."""
    from .pipeline import predict

    model, meta = load_glucose_model(model_path)
    fermentation = fermentation or (meta.get("source") == "fermentation" and data is None and cgm is None)
    x, y, clinical, unit, t_h = model_inputs(model, meta, split, data, fermentation, cgm)
    p = predict(model, x)
    ev = Evaluation(split, evaluate_predictions(y, p, clinical=clinical), y, p, unit, clinical, t_h)
    if out is not None:
        write_plots(out, ev)
        _write_json(Path(out) / "metrics.json", ev.metrics.to_dict())
    return ev


def compress_saved(model_path: str | Path, data: str | Path | None = None, fermentation: bool = False,
                   cgm: str | None = None, settings=None, seed: int = 0, out: str | Path | None = None,
                   progress: bool = False) -> CompressResult:
    """Prune (analytic threshold) + PWLQ a saved model on its training data; metrics before/after on the test
    split; with ``out``: the compressed model saved, reloaded from the file and evaluated from it."""
    from ...analysis import report
    from .data import SpectralAugmentation
    from .pipeline import CompressSettings, TrainSettings, compress_glucose, predict, size_report

    model, meta = load_glucose_model(model_path)
    fermentation = fermentation or (meta.get("source") == "fermentation" and data is None and cgm is None)
    xtr, ytr, clinical, unit, _ = model_inputs(model, meta, "train", data, fermentation, cgm)
    xva = yva = None
    if fermentation:
        xa, ya = SpectralAugmentation(seed=seed)(xtr[..., 0], ytr)
        xtr, ytr = xa[..., None], ya
    elif cgm is not None or meta.get("source") == "cgm" or (data is not None and (Path(data) / "val.csv").exists()):
        xva, yva, *_ = model_inputs(model, meta, "val", data, fermentation, cgm)
    x, y, clinical, unit, t_h = model_inputs(model, meta, "test", data, fermentation, cgm)
    cs = settings or CompressSettings(exclude=("head", "proj") if model.proj is not None else ("head",))
    loss = "relative" if meta.get("source") == "cgm" else "mse"
    before = Evaluation("fp32", evaluate_predictions(y, predict(model, x), clinical=clinical), y,
                        predict(model, x), unit, clinical, t_h)
    example = model.example_input(steps=int(meta.get("window", 1)))
    size0 = size_report(model, example)
    small, outcome = compress_glucose(model, xtr, ytr, xva, yva, cs,
                                      TrainSettings(seed=seed, loss=loss, progress=progress))
    size1 = size_report(small, example)
    rep = report(small, example)
    files: list[Path] = []
    evaluated = small
    if out is not None:
        out = Path(out)
        path = _save(small, out / "model.safetensors", {**meta, "compression": asdict(cs)})
        files.append(path)
        evaluated, _ = load_glucose_model(path)      # the numbers below come from the file
    p = predict(evaluated, x)
    after = Evaluation("compressed", evaluate_predictions(y, p, clinical=clinical), y, p, unit, clinical, t_h)
    res = CompressResult(evaluated, before, after, size0, size1, float(outcome.prune.sparsity), asdict(cs), rep,
                         files)
    packed: dict = {}
    if out is not None:  # also the packed .pq file (prunequant.save), checked against the safetensors copy
        from ... import load as pq_load
        from ... import save as pq_save
        from ...errors import PrunequantError

        try:
            pr = pq_save(small, out / "model.pq")
            same = bool(np.array_equal(predict(pq_load(pr.path), x), p))
            packed = {"path": str(pr.path), "file_bytes": int(pr.file_bytes), "predictions_identical": same}
            files.append(Path(pr.path))
        except PrunequantError as e:
            packed = {"error": str(e)}
    res.packed = packed
    if out is not None:
        files += write_plots(out, after)
        rep.to_json(out / "report.json")
        files.append(out / "report.json")
        files.append(_write_json(out / "summary.json", {
            "before": before.metrics.to_dict(), "after": after.metrics.to_dict(), "size_before": size0,
            "size_after": size1, "sparsity": res.sparsity, "evaluated_from_file": True, "packed_pq": packed}))
    return res

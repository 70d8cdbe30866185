"""``prunequant glucose simulate|train|evaluate|compress``: the NIR glucose app (see docs/glucose.md).

Data come from a recordings folder (``train.csv`` [``val.csv`` ``test.csv``], written by ``simulate`` or by you in
the same format) or from the real fermentation spectra (``--fermentation``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

glucose = typer.Typer(name="glucose", help="Blood glucose from NIR data: two stacked LSTMs, simulator, PLS "
                                           "baseline, clinical metrics, compression.", no_args_is_help=True)

_DATA_HELP = "Recordings folder with train.csv [val.csv test.csv] (e.g. from `glucose simulate`)."


def _fail(console, e: Exception) -> None:
    console.print(f"[red]error:[/red] {e}")
    raise typer.Exit(1) from e


def _metrics_table(console, title: str, rows: dict[str, Any], unit: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    for c in ("set", f"RMSE ({unit})", f"MAE ({unit})", "MARD %", "R²", "Clarke A", "Clarke A+B", "Parkes A+B",
              "ISO 15197"):
        t.add_column(c, justify="right")
    for name, m in rows.items():
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
        iso = "-" if m.iso15197 is None else ("pass" if m.iso15197["passed"] else "fail") + \
            f" ({m.iso15197['within_15']:.1f}%)"
        pab = None if m.parkes is None else m.parkes["A"] + m.parkes["B"]
        t.add_row(name, f(m.rmse), f(m.mae), f(m.mard), f(m.r2, 3), f(m.clarke_a, 1), f(m.clarke_ab, 1),
                  f(pab, 1), iso)
    console.print(t)


def _inputs(model, meta: dict, data: Path | None, fermentation: bool, split: str):
    """(x, y, clinical, unit, time_h) for ``split`` of the chosen data source, shaped for ``model``."""
    import numpy as np

    from ..apps.glucose.data import fermentation_set, read_recordings_dir, recordings_inputs

    if fermentation:
        d = fermentation_set(tuple(meta.get("region", (950.0, 1550.0))))
        x, y = (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)
        if x.shape[1] != model.length:
            raise typer.BadParameter(f"the model reads {model.length} points, the fermentation region has "
                                     f"{x.shape[1]}")
        t = None if split == "train" else d.test_time_h
        return x[..., None], y, False, "g/L", t
    if data is None:
        raise typer.BadParameter("give --data FOLDER or --fermentation")
    recs = read_recordings_dir(data)
    if split not in recs:
        raise typer.BadParameter(f"{data} has no {split}.csv")
    rec = recs[split]
    x, y, rows = recordings_inputs(rec, model.mode, int(meta.get("window", 1)))
    if y is None:
        raise typer.BadParameter(f"{data / (split + '.csv')} has no 'glucose' reference column")
    t = rec.time_min[rows] / 60.0 if rec.time_min is not None else np.arange(len(y)) * 5.0 / 60.0
    if rec.subject is not None:  # time plot: the first subject only
        first = rec.subject[rows] == rec.subject[rows][0]
        t = np.where(first, t, np.nan)
    return x, y, True, "mg/dL", t


def _plots(out: Path, name: str, y, p, clinical: bool, unit: str, time_h) -> list[Path]:
    import numpy as np

    from ..apps.glucose.plots import plot_clarke, plot_parkes, plot_time_series

    files = []
    if clinical:
        files += [plot_clarke(y, p, out / f"{name}_clarke.png"), plot_parkes(y, p, out / f"{name}_parkes.png")]
    if time_h is not None:
        ok = np.isfinite(time_h)
        files.append(plot_time_series(time_h[ok], y[ok], p[ok], out / f"{name}_time.png", unit,
                                      f"{name}: predicted vs reference"))
    return files


@glucose.command()
def simulate(
    out: Path = typer.Option("glucose_data", "--out", help="Folder for train/val/test CSVs and plots."),  # noqa: B008
    train: int = typer.Option(128, help="Training subjects."),
    val: int = typer.Option(8, help="Validation subjects."),
    test: int = typer.Option(16, help="Test subjects (ids never overlap the others)."),
    days: float = typer.Option(0.5, help="Days per training/validation subject."),
    test_days: float = typer.Option(1.0, help="Days per test subject."),
    grid: str = typer.Option("full", help="full (1000-2500 nm bins) or led (a handful of LED channels)."),
    wl_step: float = typer.Option(40.0, help="Bin width / step of the full grid (nm)."),
    noise: float = typer.Option(2e-6, help="Absorbance noise of a 10-nm channel at full transmission."),
    seed: int = typer.Option(0, help="Seed (each subject's data depend on (seed, subject id) only)."),
) -> None:
    """Simulate NIR recordings (Beer-Lambert tissue model + physiological glucose traces, a SIMULATION) and
    write OUT/train.csv, val.csv, test.csv in the recordings format, plus spectra.png and traces.png."""
    import numpy as np
    from rich.console import Console

    from ..apps.glucose.data import write_recordings_csv
    from ..apps.glucose.plots import plot_spectra, plot_traces
    from ..apps.glucose.simulate import SimulatorConfig, simulate_cohort
    from ..errors import PrunequantError

    console = Console()
    try:
        cfgs = {"train": SimulatorConfig(grid=grid, wl_step=wl_step, noise_au=noise, days=days),
                "test": SimulatorConfig(grid=grid, wl_step=wl_step, noise_au=noise, days=test_days)}
        cfgs["val"] = cfgs["train"]
        ids = {"train": range(train), "val": range(train, train + val),
               "test": range(100_000, 100_000 + test)}
        cohorts = {}
        for name in ("train", "val", "test"):
            if len(ids[name]) == 0:
                continue
            c = simulate_cohort(ids[name], cfgs[name], seed, progress=True)
            cohorts[name] = c
            s, t, ch = c.absorbance.shape
            write_recordings_csv(out / f"{name}.csv", c.wavelengths, c.absorbance.reshape(s * t, ch),
                                 y=c.glucose.reshape(-1), subject=np.repeat(c.subject_ids, t),
                                 time_min=np.tile(c.time_min, s))
            console.print(f"{name}: {s} subjects x {t} readings x {ch} channels, glucose "
                          f"{c.glucose.min():.0f}-{c.glucose.max():.0f} mg/dL -> {out / (name + '.csv')}")
    except PrunequantError as e:
        _fail(console, e)
    c = cohorts["train"]
    plot_spectra(c.wavelengths, c.absorbance[0], out / "spectra.png", color_by=c.glucose[0],
                 title="simulated absorbance, subject 0 (colour: blood glucose mg/dL)")
    plot_traces(c.time_min / 60.0, c.glucose, out / "traces.png", isf=c.isf_glucose)
    (out / "simulator.json").write_text(json.dumps(cfgs["train"].to_dict(), indent=2, default=list))
    console.print(f"wrote {out}/spectra.png, {out}/traces.png, {out}/simulator.json")


@glucose.command("train")
def train_cmd(
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Train on the real fermentation standards."),
    window: int = typer.Option(6, help="Readings per input window (time-series mode)."),
    hidden1: int = typer.Option(48, help="Hidden size of the first LSTM."),
    hidden2: int = typer.Option(24, help="Hidden size of the second LSTM."),
    project: int = typer.Option(24, help="PCA-initialised input layer width (time-series mode; 0 = none)."),
    snv: bool = typer.Option(True, "--snv/--no-snv", help="SNV across channels (time-series mode)."),
    epochs: int = typer.Option(0, help="Epochs (0 = the recipe's: 10 recordings, 30 fermentation)."),
    lr: float = typer.Option(3e-3, help="Learning rate."),
    seed: int = typer.Option(0, help="Seed."),
    out: Path = typer.Option("glucose_model", "--out", help="Folder for model.safetensors, metrics, plots."),  # noqa: B008
) -> None:
    """Train the two-LSTM model (time-series mode on recordings, spectrum mode on fermentation spectra) with the
    shared Trainer; compare with PLS on the same inputs; save OUT/model.safetensors, metrics.json and plots."""
    import numpy as np
    import torch
    from rich.console import Console

    from ..apps.glucose import experiments as ex
    from ..apps.glucose.data import read_recordings_dir, recordings_inputs
    from ..apps.glucose.metrics import evaluate_predictions
    from ..apps.glucose.model import GlucoseLSTM
    from ..apps.glucose.pipeline import TrainSettings, fit_glucose, predict, size_report
    from ..apps.glucose.pls import PLSBaseline
    from ..apps.glucose.preprocess import SpectralPreprocessing
    from ..errors import PrunequantError
    from ..io import save

    console = Console()
    results: dict[str, Any] = {}
    try:
        if fermentation:
            r = ex.FermentationRecipe()
            if epochs:
                r.train.epochs = epochs
            r.train.lr, r.seed = lr, seed
            res = ex.run_fermentation(r, out=None, console=console, progress=True, compress=False)
            model = res["model"]
            meta = {"app": "glucose", "source": "fermentation", "mode": "spectrum", "region": list(r.region),
                    "unit": "g/L", "clinical": False}
            results = {row["model"]: row for row in res["rows"] if row["model"] in ("pls", "pls_augmented", "lstm")}
        else:
            if data is None:
                raise typer.BadParameter("give --data FOLDER or --fermentation")
            recs = read_recordings_dir(data)
            xtr, ytr, _ = recordings_inputs(recs["train"], "timeseries", window)
            if ytr is None:
                raise typer.BadParameter(f"{data}/train.csv has no 'glucose' column")
            xva = yva = None
            if "val" in recs:
                xva, yva, _ = recordings_inputs(recs["val"], "timeseries", window)
            torch.manual_seed(seed)
            model = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], hidden1=hidden1, hidden2=hidden2,
                                project=min(project, xtr.shape[-1]), snv=snv)
            fit_glucose(model, xtr, ytr, xva, yva, TrainSettings(epochs=epochs or 10, lr=lr, seed=seed))
            meta = {"app": "glucose", "source": str(data), "mode": "timeseries", "window": window,
                    "wavelengths": recs["train"].wavelengths.tolist(), "unit": "mg/dL", "clinical": True}
            if "test" in recs:
                xte, yte, rows = recordings_inputs(recs["test"], "timeseries", window)
                p = predict(model, xte)
                m = evaluate_predictions(yte, p)
                subj = recs["train"].subject
                groups = None
                if subj is not None:
                    _, _, rtr = recordings_inputs(recs["train"], "timeseries", window)
                    groups = subj[rtr]
                pls = PLSBaseline(SpectralPreprocessing(snv=snv), 60).fit(xtr[::3], ytr[::3],
                                                                         None if groups is None else groups[::3])
                pm = evaluate_predictions(yte, pls.predict(xte))
                _metrics_table(console, "held-out test recordings", {"LSTM": m, f"PLS ({pls.n_components})": pm},
                               "mg/dL")
                results = {"lstm": m.to_dict(), "pls": {**pm.to_dict(), "n_components": pls.n_components}}
                tr = recs["test"].time_min
                t_h = tr[rows] / 60.0 if tr is not None else np.arange(len(yte)) * 5 / 60
                if recs["test"].subject is not None:
                    s = recs["test"].subject[rows]
                    t_h = np.where(s == s[0], t_h, np.nan)
                _plots(out, "test", yte, p, True, "mg/dL", t_h)
        size = size_report(model, model.example_input(steps=int(meta.get("window", 1))))
        console.print(f"model: {size['params']:,} parameters, {size['bytes']:,} bytes, {size['macs']:,} MACs "
                      f"per prediction")
    except PrunequantError as e:
        _fail(console, e)
    out.mkdir(parents=True, exist_ok=True)
    save(model, out / "model.safetensors", metadata=meta)
    (out / "metrics.json").write_text(json.dumps({"metrics": results, "size": size, "meta": meta}, indent=2,
                                                 default=float))
    console.print(f"wrote {out}/model.safetensors, {out}/metrics.json and plots")


def _load(path: Path):
    from ..apps.glucose.model import GlucoseLSTM
    from ..io import load

    model = load(path)
    if not isinstance(model, GlucoseLSTM):
        raise typer.BadParameter(f"{path} holds a {type(model).__name__}, not a glucose model")
    meta = dict(getattr(model, "prunequant_metadata", {}) or {})
    return model, meta


@glucose.command()
def evaluate(
    model_path: Path = typer.Argument(..., help="model.safetensors from `glucose train` or `glucose compress`."),  # noqa: B008
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP + " Uses test.csv."),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Evaluate on the fermentation test points."),
    out: Path = typer.Option("glucose_eval", "--out", help="Folder for metrics.json and plots."),  # noqa: B008
) -> None:
    """Metrics (RMSE, MAE, MARD, R², Clarke, Parkes, ISO 15197) and plots of a saved model on test data."""
    from rich.console import Console

    from ..apps.glucose.metrics import evaluate_predictions
    from ..apps.glucose.pipeline import predict
    from ..errors import PrunequantError

    console = Console()
    try:
        model, meta = _load(model_path)
        fermentation = fermentation or meta.get("source") == "fermentation" and data is None
        x, y, clinical, unit, t_h = _inputs(model, meta, data, fermentation, "test")
        p = predict(model, x)
        m = evaluate_predictions(y, p, clinical=clinical)
    except PrunequantError as e:
        _fail(console, e)
    _metrics_table(console, f"{model_path}", {"test": m}, unit)
    out.mkdir(parents=True, exist_ok=True)
    files = _plots(out, "test", y, p, clinical, unit, t_h)
    (out / "metrics.json").write_text(json.dumps(m.to_dict(), indent=2, default=float))
    console.print(f"wrote {out}/metrics.json" + "".join(f", {f}" for f in files))


@glucose.command()
def compress(
    model_path: Path = typer.Argument(..., help="model.safetensors from `glucose train`."),  # noqa: B008
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Use the fermentation data."),
    sparsity: float = typer.Option(0.85, help="Target sparsity of the analytic-threshold pruning (LSTMs)."),
    prune_epochs: int = typer.Option(8, help="Epochs learning the thresholds."),
    finetune_epochs: int = typer.Option(8, help="Epochs with the hard mask fixed."),
    wbits: int = typer.Option(4, help="PWLQ weight bits of the LSTMs and head."),
    abits: int = typer.Option(0, help="Activation bits (0 = weights only; a model with activation quantizers "
                                      "cannot be reloaded by `glucose evaluate` yet)."),
    input_bits: int = typer.Option(14, help="Bits of the PCA input layer (it cancels large nuisances)."),
    seed: int = typer.Option(0, help="Seed."),
    out: Path = typer.Option("glucose_compressed", "--out", help="Folder for the model, report and plots."),  # noqa: B008
) -> None:
    """Prune (analytic threshold, fine-tuned) and quantize (PWLQ) a trained glucose model; print size, MACs per
    prediction and metrics before/after; save OUT/model.safetensors, report.json and plots."""
    from dataclasses import asdict

    from rich.console import Console

    from ..analysis import report
    from ..apps.glucose.data import SpectralAugmentation
    from ..apps.glucose.metrics import evaluate_predictions
    from ..apps.glucose.pipeline import (
        CompressSettings,
        TrainSettings,
        compress_glucose,
        predict,
        size_report,
    )
    from ..errors import PrunequantError
    from ..io import save

    console = Console()
    try:
        model, meta = _load(model_path)
        fermentation = fermentation or meta.get("source") == "fermentation" and data is None
        xtr, ytr, clinical, unit, _ = _inputs(model, meta, data, fermentation, "train")
        xva = yva = None
        if fermentation:
            xa, ya = SpectralAugmentation(seed=seed)(xtr[..., 0], ytr)
            xtr, ytr = xa[..., None], ya
        elif data is not None and (data / "val.csv").exists():
            xva, yva, *_ = _inputs(model, meta, data, False, "val")
        x, y, clinical, unit, t_h = _inputs(model, meta, data, fermentation, "test")
        cs = CompressSettings(sparsity=sparsity, prune_epochs=prune_epochs, finetune_epochs=finetune_epochs,
                              wbits=wbits, abits=abits or None, input_bits=input_bits,
                              exclude=("head", "proj") if model.proj is not None else ("head",))
        before = evaluate_predictions(y, predict(model, x), clinical=clinical)
        example = model.example_input(steps=int(meta.get("window", 1)))
        size0 = size_report(model, example)
        small, outcome = compress_glucose(model, xtr, ytr, xva, yva, cs, TrainSettings(seed=seed))
        p = predict(small, x)
        after = evaluate_predictions(y, p, clinical=clinical)
        size1 = size_report(small, example)
    except PrunequantError as e:
        _fail(console, e)
    rep = report(small, example)
    rep.print(console)
    _metrics_table(console, "test set before / after compression", {"fp32": before, "compressed": after}, unit)
    console.print(f"size {size0['bytes']:,} -> {size1['bytes']:,} bytes ({size0['bytes'] / size1['bytes']:.1f}x), "
                  f"MACs per prediction {size0['macs']:,} -> {size1['effective_macs']:,} effective")
    out.mkdir(parents=True, exist_ok=True)
    _plots(out, "compressed", y, p, clinical, unit, t_h)
    rep.to_json(out / "report.json")
    save(small, out / "model.safetensors", metadata={**meta, "compression": asdict(cs)})
    summary = {"before": before.to_dict(), "after": after.to_dict(), "size_before": size0, "size_after": size1,
               "sparsity": outcome.prune.sparsity}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    console.print(f"wrote {out}/model.safetensors, report.json, summary.json and plots")

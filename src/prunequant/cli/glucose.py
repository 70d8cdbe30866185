"""``prunequant glucose simulate|train|evaluate|compress``: the glucose app (see docs/glucose.md).

Data: a recordings folder (``train.csv`` [``val.csv`` ``test.csv``], written by ``simulate`` or by you in the same
format), the real fermentation spectra (``--fermentation``), or a CGM record (``--cgm bokeh`` for the real record of
``bokeh-sampledata``, or ``--cgm FILE.csv`` with columns ``datetime,isig,glucose``). This module only parses and
prints; the work is in :mod:`prunequant.apps.glucose.workflows`.
"""
from __future__ import annotations

from pathlib import Path

import typer

glucose = typer.Typer(name="glucose", help="Blood glucose from sensor data: two stacked LSTMs, real CGM record, NIR "
                                           "simulators, PLS / calibration baselines, clinical metrics, compression.",
                      no_args_is_help=True)

_DATA_HELP = "Recordings folder with train.csv [val.csv test.csv] (e.g. from `glucose simulate`)."
_CGM_HELP = "CGM record: 'bokeh' (the real record of bokeh-sampledata) or a CSV with datetime,isig,glucose."


def _fail(console, e: Exception) -> None:
    """One ``error: ...`` line and exit status 2, as every other prunequant command."""
    console.print(f"[red]error:[/red] {e}")
    raise typer.Exit(2) from e


def _metrics_table(console, title: str, rows: dict, unit: str) -> None:
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


def _errors():
    from ..errors import PrunequantError

    return (PrunequantError, typer.BadParameter)


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
    from rich.console import Console

    from ..apps.glucose.workflows import simulate_recordings

    console = Console()
    try:
        res = simulate_recordings(out, train, val, test, days, test_days, grid, wl_step, noise, seed, progress=True)
    except _errors() as e:
        _fail(console, e)
    for line in res.summaries:
        console.print(line)
    console.print(f"wrote {out}/spectra.png, {out}/traces.png, {out}/simulator.json")


@glucose.command("train")
def train_cmd(
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Train on the real fermentation standards."),
    cgm: str | None = typer.Option(None, "--cgm", help=_CGM_HELP),
    window: int = typer.Option(0, help="Readings per input window (0 = 6 for recordings, 12 for a CGM record)."),
    hidden1: int = typer.Option(0, help="Hidden size of the first LSTM (0 = 48 recordings, 32 CGM)."),
    hidden2: int = typer.Option(0, help="Hidden size of the second LSTM (0 = 24 recordings, 16 CGM)."),
    project: int = typer.Option(24, help="PCA-initialised input layer width (recordings; 0 = none)."),
    snv: bool = typer.Option(True, "--snv/--no-snv", help="SNV across channels (recordings)."),
    refs_per_day: str = typer.Option("7,12,18,22", help="CGM: clock hours of the reference points (finger sticks)."),
    epochs: int = typer.Option(0, help="Epochs (0 = the recipe's: 10 recordings, 30 fermentation, 5 CGM)."),
    lr: float = typer.Option(3e-3, help="Learning rate."),
    seed: int = typer.Option(0, help="Seed."),
    out: Path = typer.Option("glucose_model", "--out", help="Folder for model.safetensors, metrics, plots."),  # noqa: B008
) -> None:
    """Train the two-LSTM model with its baselines in the same run (PLS on recordings and fermentation; linear
    calibration and ridge on a CGM record); save OUT/model.safetensors, metrics.json and plots."""
    from rich.console import Console

    from ..apps.glucose import workflows as wf

    console = Console()
    try:
        if sum([data is not None, fermentation, cgm is not None]) != 1:
            raise typer.BadParameter("give exactly one of --data FOLDER, --fermentation, --cgm bokeh|FILE")
        if fermentation:
            res = wf.train_fermentation(out, epochs=epochs, lr=lr, seed=seed, progress=True)
        elif cgm is not None:
            hours = tuple(float(h) for h in refs_per_day.split(",") if h.strip())
            res = wf.train_cgm(cgm, out, window=window or 12, hours=hours, hidden1=hidden1 or 32,
                               hidden2=hidden2 or 16, epochs=epochs or 5, lr=lr, seed=seed, progress=True)
        else:
            res = wf.train_from_recordings(data, out, window=window or 6, hidden1=hidden1 or 48,
                                           hidden2=hidden2 or 24, project=project, snv=snv, epochs=epochs or 10,
                                           lr=lr, seed=seed, progress=True)
    except (*_errors(), ValueError) as e:
        _fail(console, e)
    unit = res.meta.get("unit", "mg/dL")
    if res.evaluations:
        _metrics_table(console, "held-out test data (model and baselines, same run)",
                       {("LSTM" if k == "lstm" else k): v.metrics for k, v in res.evaluations.items()}, unit)
    s = res.size
    console.print(f"model: {s['params']:,} parameters, {s['bytes']:,} bytes, {s['macs']:,} MACs per prediction")
    console.print(f"wrote {out}/model.safetensors, {out}/metrics.json and plots")


@glucose.command()
def evaluate(
    model_path: Path = typer.Argument(..., help="model.safetensors from `glucose train` or `glucose compress`."),  # noqa: B008
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP + " Uses test.csv."),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Evaluate on the fermentation test points."),
    cgm: str | None = typer.Option(None, "--cgm", help=_CGM_HELP + " Uses the later (test) weeks."),
    out: Path = typer.Option("glucose_eval", "--out", help="Folder for metrics.json and plots."),  # noqa: B008
) -> None:
    """Metrics (RMSE, MAE, MARD, R², Clarke, Parkes, ISO 15197) and plots (Clarke, Parkes, time series) of a saved
    model on test data."""
    from rich.console import Console

    from ..apps.glucose.workflows import evaluate_saved

    console = Console()
    try:
        ev = evaluate_saved(model_path, data, fermentation, cgm, out)
    except _errors() as e:
        _fail(console, e)
    _metrics_table(console, f"{model_path}", {"test": ev.metrics}, ev.unit)
    console.print(f"wrote {out}/metrics.json" + "".join(f", {f}" for f in ev.plots))


@glucose.command()
def compress(
    model_path: Path = typer.Argument(..., help="model.safetensors from `glucose train`."),  # noqa: B008
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),  # noqa: B008
    fermentation: bool = typer.Option(False, "--fermentation", help="Use the fermentation data."),
    cgm: str | None = typer.Option(None, "--cgm", help=_CGM_HELP),
    sparsity: float = typer.Option(0.85, help="Target sparsity of the analytic-threshold pruning (LSTMs)."),
    prune_epochs: int = typer.Option(8, help="Epochs learning the thresholds."),
    finetune_epochs: int = typer.Option(8, help="Epochs with the hard mask fixed."),
    wbits: int = typer.Option(4, help="PWLQ weight bits of the LSTMs and head."),
    input_bits: int = typer.Option(14, help="Bits of the PCA input layer (it cancels large nuisances)."),
    seed: int = typer.Option(0, help="Seed."),
    out: Path = typer.Option("glucose_compressed", "--out", help="Folder for the model, report and plots."),  # noqa: B008
) -> None:
    """Prune (analytic threshold, fine-tuned) and quantize (PWLQ) a trained glucose model; save it, reload it and
    evaluate from the file; print size, MACs per prediction and metrics before/after."""
    from rich.console import Console

    from ..apps.glucose.pipeline import CompressSettings
    from ..apps.glucose.workflows import compress_saved, load_glucose_model

    console = Console()
    try:
        model, _ = load_glucose_model(model_path)
        cs = CompressSettings(sparsity=sparsity, prune_epochs=prune_epochs, finetune_epochs=finetune_epochs,
                              wbits=wbits, input_bits=input_bits,
                              exclude=("head", "proj") if model.proj is not None else ("head",))
        res = compress_saved(model_path, data, fermentation, cgm, cs, seed, out, progress=True)
    except _errors() as e:
        _fail(console, e)
    res.report.print(console)
    _metrics_table(console, "test set before / after compression (after: evaluated from the saved file)",
                   {"fp32": res.before.metrics, "compressed": res.after.metrics}, res.after.unit)
    s0, s1 = res.size_before, res.size_after
    console.print(f"size {s0['bytes']:,} -> {s1['bytes']:,} bytes ({s0['bytes'] / s1['bytes']:.1f}x), "
                  f"MACs per prediction {s0['macs']:,} -> {s1['effective_macs']:,} effective")
    if res.packed.get("file_bytes"):
        console.print(f"packed file {res.packed['path']}: {res.packed['file_bytes']:,} bytes, predictions identical "
                      f"to the safetensors copy: {res.packed['predictions_identical']}")
    console.print(f"wrote {out}/model.safetensors, report.json, summary.json and plots")

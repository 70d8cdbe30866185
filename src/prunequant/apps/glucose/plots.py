"""PNG plots for glucose results: Clarke grid, Parkes grid, predicted-vs-reference over time, spectra.

Points are coloured by the zone the classifier in :mod:`.metrics` assigns, so a figure cannot contradict its table.
Figures are drawn on a ``matplotlib.figure.Figure`` with an Agg canvas (matplotlib imported inside each function), so
the user's pyplot backend is never switched and importing this module does not import matplotlib.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import PARKES_T1_LOWER, PARKES_T1_UPPER, ZONES, clarke_zones, parkes_zones, zone_percentages


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


_ZONE_COLORS = {"A": "tab:green", "B": "tab:olive", "C": "tab:orange", "D": "tab:red", "E": "darkred"}


def _scatter_by_zone(ax, ref: np.ndarray, pred: np.ndarray, zones: np.ndarray, lim: float) -> None:
    pct = zone_percentages(zones)
    for z in ZONES:
        m = zones == z
        if m.any():
            ax.scatter(ref[m], pred[m], s=6, alpha=0.6, color=_ZONE_COLORS[z], label=f"{z}: {pct[z]:.1f}%")
    ax.plot([0, lim], [0, lim], color="0.5", lw=0.8, ls=":")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("reference glucose (mg/dL)")
    ax.set_ylabel("predicted glucose (mg/dL)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8, markerscale=2)


def plot_clarke(y_true, y_pred, path: str | Path, title: str = "Clarke error grid") -> Path:
    """Clarke error grid with its zone lines; points coloured by zone."""
    ref, pred = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
    fig, ax = _figure((6, 6))
    lim = max(400.0, float(ref.max()), float(pred.max()))
    _scatter_by_zone(ax, ref, pred, clarke_zones(ref, pred), lim)
    k = {"color": "k", "lw": 1}
    ax.plot([0, 175 / 3], [70, 70], **k)
    ax.plot([175 / 3, lim / 1.2], [70, lim], **k)                # A upper: 1.2 x
    ax.plot([70, 70], [0, 56], **k)
    ax.plot([70, lim], [56, 0.8 * lim], **k)                     # A lower: 0.8 x
    ax.plot([70, 70], [84, lim], **k)
    ax.plot([0, 70], [180, 180], **k)
    ax.plot([70, 290], [180, 400], **k)                          # C upper: x + 110
    ax.plot([130, 180], [0, 70], **k)                            # C lower: 1.4 x - 182
    ax.plot([180, 180], [0, 70], **k)
    ax.plot([180, lim], [70, 70], **k)
    ax.plot([240, 240], [70, 180], **k)
    ax.plot([240, lim], [180, 180], **k)
    ax.set_title(title)
    return _save(fig, path)


def plot_parkes(y_true, y_pred, path: str | Path, title: str = "Parkes (consensus) error grid, type 1") -> Path:
    """Parkes type 1 grid with its boundary polylines; points coloured by zone."""
    ref, pred = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
    fig, ax = _figure((6, 6))
    _scatter_by_zone(ax, ref, pred, parkes_zones(ref, pred), max(550.0, float(ref.max()), float(pred.max())))
    for line in (*PARKES_T1_UPPER, *PARKES_T1_LOWER):
        v = np.asarray(line, float)
        ax.plot(v[:, 0], v[:, 1], color="k", lw=1)
    ax.set_title(title)
    return _save(fig, path)


def plot_time_series(time_h, y_true, y_pred, path: str | Path, unit: str = "mg/dL",
                     title: str = "predicted vs reference", extra: dict[str, np.ndarray] | None = None,
                     label: str = "prediction") -> Path:
    """Reference and prediction(s) against time (hours). ``extra`` adds more labelled prediction curves."""
    t = np.asarray(time_h, float).ravel()
    fig, ax = _figure((9, 3.5))
    ax.plot(t, np.asarray(y_true, float).ravel(), "k.-", ms=4, lw=1, label="reference")
    ax.plot(t, np.asarray(y_pred, float).ravel(), "-", lw=1.2, color="tab:blue", label=label)
    for name, v in (extra or {}).items():
        ax.plot(t, np.asarray(v, float).ravel(), "-", lw=1, label=name)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"glucose ({unit})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_spectra(wavelengths, spectra, path: str | Path, color_by=None, xlabel: str = "wavelength (nm)",
                 title: str = "spectra", max_lines: int = 60) -> Path:
    """A few spectra overlaid, coloured by ``color_by`` (e.g. glucose)."""
    w = np.asarray(wavelengths, float)
    s = np.asarray(spectra, float).reshape(-1, w.size)
    idx = np.linspace(0, len(s) - 1, min(max_lines, len(s))).astype(int)
    fig, ax = _figure((8, 4))
    c = None if color_by is None else np.asarray(color_by, float).ravel()
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = colormaps["viridis"]
    lo, hi = (0.0, 1.0) if c is None else (float(c.min()), float(c.max()) + 1e-12)
    for i in idx:
        ax.plot(w, s[i], lw=0.7, color=cmap(0.5 if c is None else (c[i] - lo) / (hi - lo)))
    if c is not None:
        sm = ScalarMappable(cmap=cmap, norm=Normalize(lo, hi))
        fig.colorbar(sm, ax=ax, label="glucose")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("absorbance")
    ax.set_title(title)
    return _save(fig, path)


def plot_traces(time_h, glucose, path: str | Path, isf=None, max_subjects: int = 4,
                title: str = "simulated glucose traces") -> Path:
    """Blood glucose (and interstitial glucose, dashed) of the first few subjects; arrays (S, T)."""
    t = np.asarray(time_h, float)
    g = np.atleast_2d(np.asarray(glucose, float))
    fig, ax = _figure((9, 3.5))
    for i in range(min(max_subjects, len(g))):
        line, = ax.plot(t, g[i], lw=1, label=f"subject {i}")
        if isf is not None:
            ax.plot(t, np.atleast_2d(isf)[i], lw=0.8, ls="--", color=line.get_color())
    ax.axhspan(70, 180, color="0.9", zorder=0, label="70-180 mg/dL")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("glucose (mg/dL)")
    ax.set_title(title + (" (dashed: interstitial)" if isf is not None else ""))
    ax.legend(fontsize=8, ncol=5)
    return _save(fig, path)

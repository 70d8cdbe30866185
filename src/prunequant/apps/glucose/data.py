"""Data for the glucose app: the real fermentation spectra, spectral augmentation, and the recordings CSV format.

**Fermentation** (real mid-infrared spectra, glucose in g/L, via :func:`prunequant.data.fermentation_data`): 21 lab
standards for training and the 34 HPLC-referenced points of an on-line fermentation run for testing. The last
three on-line spectra in the chemotools file are blank placeholders (every value 1.0); an HPLC time that maps onto
one of them is moved to the nearest earlier real spectrum. Default region 950–1550 cm⁻¹ (the fingerprint region
the chemotools regression guide uses).

**Recordings CSV** (users' own data, and what ``prunequant glucose simulate`` writes): one reading per row; optional
columns ``subject`` and ``time_min``; an optional reference column ``glucose``; every other column is one
wavelength channel whose header is its wavelength (e.g. ``1550`` or ``1550.0``), in ascending order. Example::

    subject,time_min,glucose,1000,1010,1020,...
    3,0,112.5,0.4512,0.4498,0.4481,...
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError, ShapeError, StorageError

FERMENTATION_RANGE = (950.0, 1550.0)
META_COLUMNS = ("subject", "time_min", "glucose")


@dataclass
class SpectraSet:
    """Static spectra with references, split into train and test (``clinical``: blood glucose in mg/dL)."""

    name: str
    axis: np.ndarray          # (L,) wavelength (nm) or wavenumber (cm^-1)
    axis_label: str
    unit: str
    clinical: bool
    x_train: np.ndarray       # (N, L)
    y_train: np.ndarray       # (N,)
    x_test: np.ndarray        # (M, L)
    y_test: np.ndarray        # (M,)
    test_time_h: np.ndarray | None = None
    x_stream: np.ndarray | None = None      # every on-line spectrum (time-ordered), for a full-run plot
    stream_time_h: np.ndarray | None = None


def fermentation_set(region: tuple[float, float] = FERMENTATION_RANGE) -> SpectraSet:
    """The chemotools fermentation spectra restricted to ``region`` (cm⁻¹), as a :class:`SpectraSet`."""
    from ...data import fermentation_data
    from ...data.fermentation import SPECTRUM_INTERVAL_MIN

    lo, hi = region
    if not lo < hi:
        raise ConfigError(f"fermentation region must be (low, high) in cm^-1, got {region}")
    d = fermentation_data()
    keep = (d.wavenumbers >= lo) & (d.wavenumbers <= hi)
    if keep.sum() < 16:
        raise ConfigError(f"region {region} holds only {int(keep.sum())} wavenumbers of the fermentation data")
    stream, ok, idx = d.x_test_all, d.valid, d.test_index
    return SpectraSet(name="fermentation", axis=d.wavenumbers[keep], axis_label="wavenumber (cm$^{-1}$)",
                      unit="g/L", clinical=False, x_train=d.x_train[:, keep], y_train=d.y_train,
                      x_test=stream[idx][:, keep], y_test=d.y_test, test_time_h=d.test_time_h,
                      x_stream=stream[ok][:, keep], stream_time_h=np.flatnonzero(ok) * SPECTRUM_INTERVAL_MIN / 60.0)


@dataclass
class SpectralAugmentation:
    """Training-set augmentation for a handful of spectra (Beer–Lambert motivated; see docs/glucose.md).

    * ``mixtures``: convex combinations of ``mix_k`` random training spectra (Dirichlet(``mix_alpha``) weights)
      with the same combination of their references: absorbance is linear in concentration, so a mixture of two
      standards is a physically valid standard;
    * ``poly``: random quadratic + cubic baselines up to ``poly`` absorbance units across the region;
    * ``broad``: two random broad Gaussian baseline bumps (width 7–30% of the region) up to ``broad``;
    * ``scale`` / ``noise``: multiplicative gain spread and white noise (both 0 by default).

    The originals are kept. Offsets and tilts are not added: the linear correction removes them anyway.
    """

    n: int = 4000
    mix_k: int = 3
    mix_alpha: float = 0.5
    poly: float = 0.3
    broad: float = 0.3
    scale: float = 0.0
    noise: float = 0.0
    seed: int = 0

    def __call__(self, x: np.ndarray, y: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(x) < self.mix_k:
            raise ShapeError(f"augmentation mixes {self.mix_k} spectra but only {len(x)} are given")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        n, k = self.n, self.mix_k
        w = rng.dirichlet(np.full(k, self.mix_alpha), n)
        idx = np.argsort(rng.random((n, len(x))), axis=1)[:, :k]          # k distinct spectra per mixture
        xa = np.einsum("nk,nkl->nl", w, x[idx])
        ya = np.einsum("nk,nk->n", w, y[idx])
        t = np.linspace(-1.0, 1.0, x.shape[1])[None, :]
        xa = xa * (1.0 + self.scale * rng.normal(size=(n, 1)))
        xa += self.poly * (rng.uniform(-1, 1, (n, 1)) * t ** 2 + rng.uniform(-1, 1, (n, 1)) * t ** 3)
        for _ in range(2):
            c, wd = rng.uniform(-1.2, 1.2, (n, 1)), rng.uniform(0.15, 0.6, (n, 1))
            xa += self.broad * rng.uniform(-1, 1, (n, 1)) * np.exp(-0.5 * ((t - c) / wd) ** 2)
        if self.noise:
            xa += self.noise * rng.normal(size=xa.shape)
        return np.concatenate([x, xa]), np.concatenate([y, ya])


# ------------------------------------------------------------------------------------------ recordings CSV
@dataclass
class Recordings:
    """Readings from a recordings CSV: x (N, C) absorbance per wavelength channel, optional y/subject/time."""

    wavelengths: np.ndarray
    x: np.ndarray
    y: np.ndarray | None = None
    subject: np.ndarray | None = None
    time_min: np.ndarray | None = None

    def windows(self, length: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Sliding windows of ``length`` consecutive readings per subject (time-ordered), target at the last step.
        Returns X (W, length, C), y (W,) or None, and the row index of each window's last reading."""
        if length < 1:
            raise ConfigError(f"window length must be >= 1, got {length}")
        subj = self.subject if self.subject is not None else np.zeros(len(self.x), dtype=np.int64)
        t = self.time_min if self.time_min is not None else np.arange(len(self.x), dtype=np.float64)
        xs, ys, rows = [], [], []
        for s in np.unique(subj):
            r = np.flatnonzero(subj == s)
            r = r[np.argsort(t[r], kind="stable")]
            if len(r) < length:
                continue
            ends = np.arange(length - 1, len(r))
            win = r[ends[:, None] - np.arange(length - 1, -1, -1)[None, :]]
            xs.append(self.x[win])
            rows.append(r[ends])
            if self.y is not None:
                ys.append(self.y[r[ends]])
        if not xs:
            raise ShapeError(f"no subject has {length} readings, so no window of that length exists")
        return (np.concatenate(xs), np.concatenate(ys) if self.y is not None else None, np.concatenate(rows))


def write_recordings_csv(path: str | Path, wavelengths, x, y=None, subject=None, time_min=None) -> Path:
    """Write readings in the recordings CSV format (see the module doc)."""
    import pandas as pd

    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(wavelengths):
        raise ShapeError(f"{path}: x must be (N, {len(wavelengths)}), got {x.shape}")
    cols = {}
    if subject is not None:
        cols["subject"] = np.asarray(subject)
    if time_min is not None:
        cols["time_min"] = np.asarray(time_min)
    if y is not None:
        cols["glucose"] = np.asarray(y)
    df = pd.concat([pd.DataFrame(cols), pd.DataFrame(x, columns=[f"{float(w):g}" for w in wavelengths])], axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.7g")
    return path


def read_recordings_csv(path: str | Path, require_reference: bool = False) -> Recordings:
    """Read a recordings CSV; errors name the file and the offending column or row."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise StorageError(f"{path}: not a readable CSV file ({e})") from None
    if df.empty:
        raise ShapeError(f"{path}: no readings (empty table)")
    channels = [c for c in df.columns if c not in META_COLUMNS]
    try:
        wl = np.array([float(c) for c in channels])
    except ValueError:
        bad = [c for c in channels if not _is_number(c)]
        raise ShapeError(f"{path}: column(s) {bad} are neither {META_COLUMNS} nor wavelengths") from None
    if wl.size == 0:
        raise ShapeError(f"{path}: no wavelength columns")
    if np.any(np.diff(wl) <= 0):
        raise ShapeError(f"{path}: wavelength columns must be strictly ascending, got {channels[:8]}...")
    if require_reference and "glucose" not in df.columns:
        raise ShapeError(f"{path}: a 'glucose' reference column is required here")
    x = _numeric(df[channels], path, "wavelength")
    y = _numeric(df[["glucose"]], path, "glucose")[:, 0] if "glucose" in df.columns else None
    subject = df["subject"].to_numpy() if "subject" in df.columns else None
    tm = _numeric(df[["time_min"]], path, "time_min")[:, 0] if "time_min" in df.columns else None
    return Recordings(wavelengths=wl, x=x, y=y, subject=subject, time_min=tm)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _numeric(df, path: Path, what: str) -> np.ndarray:
    import pandas as pd

    num = df.apply(pd.to_numeric, errors="coerce")
    bad = num.isna().to_numpy() | ~np.isfinite(num.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ShapeError(f"{path}: {what} column {df.columns[c]!r} has a missing, non-numeric or infinite value at "
                         f"data row {r + 1} ({int(bad.sum())} bad cells in all)")
    return num.to_numpy(dtype=np.float64)


def read_recordings_dir(folder: str | Path) -> dict[str, Recordings]:
    """``train.csv`` (required), ``val.csv`` and ``test.csv`` (optional) of a folder, as written by
    ``prunequant glucose simulate``. All files must share the same wavelength channels."""
    folder = Path(folder)
    if not (folder / "train.csv").exists():
        raise StorageError(f"{folder}: no train.csv (expected train.csv [val.csv test.csv] in recordings format)")
    out = {name: read_recordings_csv(folder / f"{name}.csv") for name in ("train", "val", "test")
           if (folder / f"{name}.csv").exists()}
    ref = out["train"].wavelengths
    for name, rec in out.items():
        if rec.wavelengths.shape != ref.shape or not np.allclose(rec.wavelengths, ref):
            raise ShapeError(f"{folder / (name + '.csv')}: wavelength channels differ from train.csv")
    return out


def recordings_inputs(rec: Recordings, mode: str, window: int = 1) -> tuple[np.ndarray, np.ndarray | None,
                                                                          np.ndarray]:
    """Model inputs from recordings: ``timeseries`` → windows (N, window, C); ``spectrum`` → (N, C, 1), one
    reading each. Returns X, y (or None) and the row of the reading each input predicts."""
    if mode == "timeseries":
        return rec.windows(window)
    if mode == "spectrum":
        return rec.x[..., None], rec.y, np.arange(len(rec.x))
    raise ConfigError(f"mode must be 'timeseries' or 'spectrum', got {mode!r}")

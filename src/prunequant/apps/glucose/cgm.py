"""A real continuous-glucose-monitor (CGM) record: raw sensor current ``isig`` and the device's glucose.

**What it is** (provenance in :data:`CGM_PROVENANCE`): the ``glucose`` sample data of the ``bokeh-sampledata``
package (file ``bokeh_sampledata/_data/CGM.csv.gz``, public domain, "supplied directly to a Bokeh maintainer by a
personal acquaintance"). One person's CGM, 52,281 readings from 2010-03-24 to 2010-10-10, mostly every 5 minutes
(some 1/4-minute steps, 3 repeated time stamps kept in file order, and gaps of 10 minutes to days).
Columns: ``isig``, the raw electrochemical sensor current
(nA; 1,061 readings are the string ``nil``), and ``glucose``, the glucose (mg/dL, 40-400) **that the device
reported**: the device's own calibrated estimate, fitted from the user's finger-stick references and filtered. It is
**not** laboratory or capillary blood glucose, and the finger-stick values themselves are not in the file.

**The task** this module sets up: from the history of raw current (and sparse reference points at a finger-stick
cadence taken from the record, as a user's meter would give them) predict the device's glucose, i.e. learn the
sensor's calibration including its drift. Split by time (earlier weeks train, later weeks test), windows never span
a gap.

The file is read with the standard library (gzip + csv), so neither bokeh nor pandas is needed; the package is
located with :func:`importlib.util.find_spec` and never imported. Nothing is downloaded at run time.

Example::

    from prunequant.apps.glucose.cgm import load_cgm_record, time_split
    rec = load_cgm_record()                 # needs `pip install bokeh-sampledata` (the [glucose] extra)
    parts = time_split(rec, test_fraction=0.3)
    print(len(rec), parts["train"].end, parts["test"].start)
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, ShapeError, StorageError

CGM_PROVENANCE = {
    "name": "cgm-isig",
    "package": "bokeh-sampledata",
    "module": "bokeh_sampledata.glucose",
    "file": "bokeh_sampledata/_data/CGM.csv.gz",
    "licence": "public domain (bokeh-sampledata licenses/datasets.json; module doc of bokeh_sampledata.glucose)",
    "subject": "one person, continuous glucose monitor, 2010-03-24 to 2010-10-10",
    "isig": "raw sensor current (nA) as logged by the device; 'nil' = no reading",
    "glucose": "the device's calibrated glucose estimate in mg/dL (from finger-stick references, filtered; range "
               "40-400), NOT laboratory or capillary blood glucose",
}
MAX_GAP_MIN = 15.0  # a step longer than this starts a new segment (3 missed 5-minute readings)


@dataclass
class CGMRecord:
    """Time-ordered CGM readings. ``isig`` is NaN where the device logged 'nil'."""

    time: np.ndarray          # (N,) datetime64[s]
    isig: np.ndarray          # (N,) nA, NaN = nil
    glucose: np.ndarray       # (N,) mg/dL, the device's estimate
    source: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.time)
        if not (len(self.isig) == n == len(self.glucose)):
            raise ShapeError(f"{self.source}: time, isig and glucose lengths differ "
                             f"({n}, {len(self.isig)}, {len(self.glucose)})")

    def __len__(self) -> int:
        return len(self.time)

    @property
    def time_min(self) -> np.ndarray:
        """Minutes since 1970 (float64): a monotone clock for arithmetic."""
        return self.time.astype("datetime64[s]").astype(np.int64) / 60.0

    @property
    def start(self) -> np.datetime64:
        return self.time[0]

    @property
    def end(self) -> np.datetime64:
        return self.time[-1]

    @property
    def nil(self) -> np.ndarray:
        return ~np.isfinite(self.isig)

    def segments(self, max_gap_min: float = MAX_GAP_MIN) -> np.ndarray:
        """Segment id of each reading: a new segment starts after a step longer than ``max_gap_min``."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        gap = np.diff(self.time_min) > max_gap_min
        return np.concatenate([[0], np.cumsum(gap)]).astype(np.int64)

    def take(self, idx) -> CGMRecord:
        idx = np.asarray(idx)
        return CGMRecord(self.time[idx], self.isig[idx], self.glucose[idx], self.source, dict(self.provenance))

    def summary(self) -> dict:
        steps = np.diff(self.time_min)
        return {"readings": len(self), "nil_isig": int(self.nil.sum()), "start": str(self.start),
                "end": str(self.end), "segments": int(self.segments().max() + 1) if len(self) else 0,
                "median_step_min": float(np.median(steps)) if len(steps) else None,
                "glucose_min": float(self.glucose.min()), "glucose_max": float(self.glucose.max())}


def bokeh_cgm_path() -> Path:
    """Path of ``CGM.csv.gz`` inside the installed ``bokeh-sampledata`` package (the package is not imported)."""
    spec = importlib.util.find_spec("bokeh_sampledata")
    if spec is None or not spec.submodule_search_locations:
        raise StorageError("the real CGM record needs the bokeh-sampledata package: pip install bokeh-sampledata "
                           "(or pip install 'prunequant[glucose]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "_data" / "CGM.csv.gz"
    if not path.exists():
        raise StorageError(f"{path}: bokeh-sampledata is installed but its CGM.csv.gz is missing")
    return path


def read_cgm_csv(path: str | Path) -> CGMRecord:
    """Read a CGM CSV (optionally gzip-compressed) with columns ``datetime`` (ISO 8601), ``isig`` (nA; 'nil' or
    empty = missing) and ``glucose`` (mg/dL), in any order; rows are sorted by time. Errors name file and row."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise StorageError(f"{path}: not a readable (gzip) CSV file ({e})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ShapeError(f"{path}: empty file")
    head = [h.strip().lower() for h in rows[0]]
    need = ("datetime", "isig", "glucose")
    missing = [c for c in need if c not in head]
    if missing:
        raise ShapeError(f"{path}: missing column(s) {missing}; a CGM CSV has columns {list(need)}")
    it, ii, ig = (head.index(c) for c in need)
    body = [r for r in rows[1:] if r]
    if not body:
        raise ShapeError(f"{path}: no readings")
    try:
        t = np.array([r[it] for r in body], dtype="datetime64[s]")
    except (ValueError, IndexError) as e:
        raise ShapeError(f"{path}: unreadable datetime ({e})") from None
    isig = np.full(len(body), np.nan)
    glu = np.empty(len(body))
    for k, r in enumerate(body):
        try:
            s = r[ii].strip()
            if s and s.lower() not in ("nil", "nan", "na"):
                isig[k] = float(s)
            glu[k] = float(r[ig])
        except (ValueError, IndexError):
            raise ShapeError(f"{path}: data row {k + 1} has a non-numeric isig or glucose: {r}") from None
    if not np.isfinite(glu).all() or (glu <= 0).any():
        bad = int(np.flatnonzero(~(np.isfinite(glu) & (glu > 0)))[0])
        raise ShapeError(f"{path}: glucose must be a positive number of mg/dL (data row {bad + 1})")
    order = np.argsort(t, kind="stable")
    return CGMRecord(t[order], isig[order], glu[order], source=str(path))


def load_cgm_record(path: str | Path | None = None) -> CGMRecord:
    """The real CGM record of ``bokeh-sampledata`` (default) or a CGM CSV at ``path``, with provenance."""
    rec = read_cgm_csv(path if path is not None else bokeh_cgm_path())
    if path is None:
        rec.provenance = dict(CGM_PROVENANCE)
    else:
        rec.provenance = {"name": "cgm-csv", "file": str(path)}
    return rec


def time_split_indices(rec: CGMRecord, test_fraction: float = 0.3, val_fraction: float = 0.1,
                       boundary_gap_min: float = 60.0) -> dict[str, np.ndarray]:
    """Split by time into contiguous index ranges: the earliest readings train, then validation, the latest
    ``test_fraction`` test. Cut points sit at reading counts; the readings within ``boundary_gap_min`` after each
    cut are dropped, so times never overlap and a part's first reading is at least that long after the last one
    of the part before."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ConfigError(f"fractions must be in (0, 1) and sum below 1, got test {test_fraction}, "
                          f"val {val_fraction}")
    n = len(rec)
    tm = rec.time_min
    c_test = int(round(n * (1 - test_fraction)))
    c_val = int(round(n * (1 - test_fraction - val_fraction)))
    parts = {"train": np.arange(0, c_val)}
    if val_fraction > 0:
        parts["val"] = np.arange(c_val, c_test)
    parts["test"] = np.arange(c_test, n)
    out = {}
    prev_end = None
    for name, idx in parts.items():
        if prev_end is not None:
            idx = idx[tm[idx] > prev_end + boundary_gap_min]
        if len(idx) == 0:
            raise ShapeError(f"{rec.source}: the {name} part of the time split is empty")
        out[name] = idx
        prev_end = tm[idx[-1]]
    return out


def time_split(rec: CGMRecord, test_fraction: float = 0.3, val_fraction: float = 0.1,
               boundary_gap_min: float = 60.0) -> dict[str, CGMRecord]:
    """:func:`time_split_indices` as records (train, [val,] test)."""
    return {k: rec.take(v) for k, v in time_split_indices(rec, test_fraction, val_fraction,
                                                          boundary_gap_min).items()}


def reference_points(rec: CGMRecord, hours: tuple[float, ...] = (7.0, 19.0), tolerance_min: float = 60.0) -> np.ndarray:
    """Indices of sparse reference readings at a finger-stick cadence: for each day and each clock hour in
    ``hours``, the first reading at or after that time (within ``tolerance_min``) whose isig is valid. The device
    glucose there stands in for the meter value (the file holds no meter values)."""
    if len(rec) == 0:
        return np.zeros(0, dtype=np.int64)
    tm = rec.time_min
    ok = np.isfinite(rec.isig)
    days = np.unique(rec.time.astype("datetime64[D]"))
    targets = (days.astype("datetime64[s]").astype(np.int64)[:, None] / 60.0
               + np.asarray(hours, dtype=np.float64)[None, :] * 60.0).ravel()
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(tm[cand], targets, side="left")
    pos = pos[pos < len(cand)]
    idx = cand[pos]
    keep = tm[idx] - targets[: len(pos)] <= tolerance_min
    return np.unique(idx[keep])


# ------------------------------------------------------------------------------------------ calibration baseline
@dataclass
class LinearCalibration:
    """Standard CGM calibration: glucose = a·isig + b (clipped to ``clip``), re-fitted at each reference point from
    the last ``n_refs`` (isig, reference glucose) pairs and applied to the readings until the next reference (causal).

    ``mode="line"``: least-squares slope and intercept (falls back to ``"offset"`` when the pairs' isig spread is
    below ``min_spread`` nA or the slope is not positive); ``mode="offset"``: glucose = a·(isig − offset) with a
    fixed sensor offset (nA) and a the least-squares gain. :meth:`select` picks mode/n_refs/offset on training data.
    """

    n_refs: int = 2
    mode: str = "offset"
    offset: float = 0.0
    min_spread: float = 2.0
    clip: tuple[float, float] = (40.0, 400.0)   # the device's reporting range (mg/dL)

    def __post_init__(self):
        if self.mode not in ("line", "offset"):
            raise ConfigError(f"calibration mode must be 'line' or 'offset', got {self.mode!r}")
        if self.n_refs < 1:
            raise ConfigError(f"n_refs must be >= 1, got {self.n_refs}")

    def params(self, ref_isig: np.ndarray, ref_glucose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slope and intercept in force after each reference k (fitted on references k−n_refs+1..k)."""
        x = np.asarray(ref_isig, dtype=np.float64)
        y = np.asarray(ref_glucose, dtype=np.float64)
        k = len(x)
        a, b = np.empty(k), np.empty(k)
        for j in range(k):
            xs, ys = x[max(0, j - self.n_refs + 1): j + 1], y[max(0, j - self.n_refs + 1): j + 1]
            xo = xs - self.offset
            gain = float(xo @ ys / max(xo @ xo, 1e-9))
            a[j], b[j] = gain, -gain * self.offset
            if self.mode == "line" and len(xs) >= 2 and np.ptp(xs) >= self.min_spread:
                sl, ic = np.polyfit(xs, ys, 1)
                if sl > 0:
                    a[j], b[j] = sl, ic
        return a, b

    def predict(self, time_min, isig, ref_time_min, ref_isig, ref_glucose) -> np.ndarray:
        """Calibrated glucose of each reading from the references strictly before or at its time. Readings before
        the first reference use the first calibration. NaN isig gives NaN."""
        a, b = self.params(ref_isig, ref_glucose)
        if len(a) == 0:
            raise ShapeError("calibration needs at least one reference point")
        k = np.searchsorted(np.asarray(ref_time_min), np.asarray(time_min), side="right") - 1
        k = np.clip(k, 0, len(a) - 1)
        return np.clip(a[k] * np.asarray(isig, dtype=np.float64) + b[k], *self.clip)

    def predict_record(self, rec: CGMRecord, refs: np.ndarray) -> np.ndarray:
        tm = rec.time_min
        return self.predict(tm, rec.isig, tm[refs], rec.isig[refs], rec.glucose[refs])

    @classmethod
    def select(cls, rec: CGMRecord, refs: np.ndarray, score_rows: np.ndarray,
               n_refs: tuple[int, ...] = (1, 2, 3, 4, 6), offsets: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0),
               ) -> tuple[LinearCalibration, dict]:
        """Best calibration by MARD on ``score_rows`` (training readings) over modes, n_refs and offsets."""
        y = rec.glucose[score_rows]
        best, table = None, {}
        for mode in ("offset", "line"):
            for n in n_refs:
                for off in offsets:
                    c = cls(n_refs=n, mode=mode, offset=off)
                    p = c.predict_record(rec, refs)[score_rows]
                    ok = np.isfinite(p)
                    m = float(np.mean(np.abs(p[ok] - y[ok]) / y[ok]) * 100)
                    table[f"{mode}/n{n}/off{off:g}"] = m
                    if best is None or m < best[0]:
                        best = (m, c)
        return best[1], table


# ------------------------------------------------------------------------------------------ model inputs
READING_FEATURES = ("isig", "nil", "calibrated", "ref_glucose", "ref_isig", "hours_since_ref")
CGM_FEATURES = ("calibrated", "isig_rel", "nil", "hours_since_ref", "ref_rel", "isig_since_ref")
"""Per step of a window ending at reading e: the baseline's calibrated glucose (mg/dL; the model's base channel),
isig_t / isig_e − 1, the nil flag, hours since the reference in force, ref_glucose_t / calibrated_e − 1 and
isig_e / ref_isig_t − 1. Ratios make the inputs free of the sensor's slowly changing sensitivity."""


@dataclass
class CGMWindows:
    """Sliding windows over a CGM record: x (N, T, 6) with the :data:`CGM_FEATURES` per step, y (N,) the device
    glucose at each window's last reading, ``rows`` that reading's index, ``calibrated`` the baseline there."""

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    calibrated: np.ndarray
    time: np.ndarray


def cgm_features(rec: CGMRecord, refs: np.ndarray, calibration: LinearCalibration) -> np.ndarray:
    """Per-reading features (N, 6) named :data:`READING_FEATURES`, causal: isig carried forward over 'nil' readings
    (within a segment; before the segment's first valid reading, the isig of the reference in force), a nil flag,
    the baseline's calibrated value, the last reference (glucose, isig) and the hours since it."""
    tm = rec.time_min
    seg = rec.segments()
    isig = rec.isig.copy()
    nil = ~np.isfinite(isig)
    # carry the last valid isig forward within its segment
    idx = np.where(~nil, np.arange(len(isig)), -1)
    last = np.maximum.accumulate(idx)
    filled = np.where(last >= 0, isig[np.maximum(last, 0)], np.nan)
    stale = (last >= 0) & (seg[np.maximum(last, 0)] != seg)
    filled[stale | (last < 0)] = np.nan
    k = np.searchsorted(tm[refs], tm, side="right") - 1
    has = k >= 0
    kk = np.clip(k, 0, len(refs) - 1)
    ref_g = np.where(has, rec.glucose[refs][kk], rec.glucose[refs][0])
    ref_i = np.where(has, rec.isig[refs][kk], rec.isig[refs][0])
    since = np.where(has, (tm - tm[refs][kk]) / 60.0, 0.0)
    filled = np.where(np.isfinite(filled), filled, ref_i)  # no valid isig yet in this segment: the reference's
    cal = calibration.predict(tm, filled, tm[refs], rec.isig[refs], rec.glucose[refs])
    return np.stack([filled, nil.astype(np.float64), cal, ref_g, ref_i, since], axis=1)


def cgm_windows(rec: CGMRecord, feats: np.ndarray, length: int, rows: np.ndarray | None = None,
                stride: int = 1) -> CGMWindows:
    """Windows of ``length`` consecutive readings inside one segment (no gap > :data:`MAX_GAP_MIN`), ending at a
    reading with a valid isig; ``rows`` restricts the end readings (e.g. a split's indices into ``rec``)."""
    if length < 1:
        raise ConfigError(f"window length must be >= 1, got {length}")
    seg = rec.segments()
    n = len(rec)
    ends = np.arange(length - 1, n) if rows is None else np.asarray(rows)
    lo = 0 if rows is None else int(np.min(rows))
    ends = ends[ends - (length - 1) >= lo]   # the whole window inside the given (contiguous) rows
    same = seg[ends] == seg[ends - (length - 1)]
    ends = ends[same & np.isfinite(rec.isig[ends])][::stride]
    if len(ends) == 0:
        raise ShapeError(f"no window of {length} readings fits inside one segment of {rec.source}")
    win = ends[:, None] - np.arange(length - 1, -1, -1)[None, :]
    f = feats[win]                                                   # (N, T, 6) READING_FEATURES
    isig, cal = f[..., 0], f[..., 2]
    x = np.stack([cal, isig / isig[:, -1:] - 1.0, f[..., 1], f[..., 5], f[..., 3] / cal[:, -1:] - 1.0,
                  isig[:, -1:] / f[..., 4] - 1.0], axis=-1)
    return CGMWindows(x=x.astype(np.float32), y=rec.glucose[ends], rows=ends, calibrated=feats[ends, 2],
                      time=rec.time[ends])


@dataclass
class CGMTask:
    """Everything the CGM experiment needs, built the same way for training, evaluation and the benchmark."""

    record: CGMRecord
    refs: np.ndarray
    calibration: LinearCalibration
    calibration_table: dict
    parts: dict[str, np.ndarray]
    windows: dict[str, CGMWindows]
    settings: dict

    def meta(self) -> dict:
        """JSON-able settings that rebuild this task (stored with a saved model)."""
        return {"source": "cgm", "window": self.settings["window"], "cgm": self.settings,
                "calibration": {"n_refs": self.calibration.n_refs, "mode": self.calibration.mode,
                                "offset": self.calibration.offset, "clip": list(self.calibration.clip)},
                "unit": "mg/dL", "clinical": True,
                "provenance": self.record.provenance}


FINGERSTICK_HOURS = (7.0, 12.0, 18.0, 22.0)  # before breakfast, lunch, dinner and bed: the usual 4/day regimen


def prepare_cgm(rec: CGMRecord | None = None, window: int = 12, hours: tuple[float, ...] = FINGERSTICK_HOURS,
                test_fraction: float = 0.3, val_fraction: float = 0.1, calibration: LinearCalibration | None = None,
                train_stride: int = 1, path: str | None = None) -> CGMTask:
    """Load (unless given), split by time, place the reference points, choose the calibration baseline on the
    training readings (unless given) and build the windows of every part."""
    rec = rec if rec is not None else load_cgm_record(path)
    parts = time_split_indices(rec, test_fraction, val_fraction)
    refs = reference_points(rec, hours)
    if len(refs) == 0:
        raise ShapeError(f"{rec.source}: no reference point at hours {hours}")
    table = {}
    if calibration is None:
        tr = parts["train"]
        calibration, table = LinearCalibration.select(rec, refs, tr[np.isfinite(rec.isig[tr])])
    feats = cgm_features(rec, refs, calibration)
    wins = {k: cgm_windows(rec, feats, window, v, stride=train_stride if k == "train" else 1)
            for k, v in parts.items()}
    settings = {"window": window, "hours": list(hours), "test_fraction": test_fraction,
                "val_fraction": val_fraction, "path": path}
    return CGMTask(rec, refs, calibration, table, parts, wins, settings)


def cgm_task_from_meta(meta: dict, rec: CGMRecord | None = None) -> CGMTask:
    """Rebuild the task a saved model was trained on (same split, references and calibration)."""
    s, c = meta["cgm"], meta["calibration"]
    return prepare_cgm(rec, int(s["window"]), tuple(s["hours"]), float(s["test_fraction"]),
                       float(s["val_fraction"]), LinearCalibration(**{**c, "clip": tuple(c["clip"])}),
                       path=s.get("path"))

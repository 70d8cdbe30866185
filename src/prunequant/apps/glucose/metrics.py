"""Accuracy metrics for glucose predictions: RMSE, MAE, MARD, R², Clarke and Parkes error grids, ISO 15197.

All grids take reference and prediction in mg/dL (x = reference, y = prediction).

* **Clarke** (Clarke et al., Diabetes Care 1987): zone A within 20% of the reference or both below 70 mg/dL;
  zones tested in the order A, E, C, D, then B for the rest (the boundaries in common use).
* **Parkes / consensus grid, type 1** (Parkes et al., Diabetes Care 2000; vertex coordinates from Pfützner et al.,
  J Diabetes Sci Technol 2013). Each boundary is a polyline, extended linearly past its last vertex; a point lying
  exactly on a boundary belongs to the inner (better) zone.
* **ISO 15197:2013**: ≥95% of readings within ±15 mg/dL (reference < 100 mg/dL) or ±15% (reference ≥ 100 mg/dL),
  and ≥99% in consensus-grid zones A+B.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ShapeError

ZONES = ("A", "B", "C", "D", "E")


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ShapeError(f"reference has {t.size} values but prediction has {p.size}")
    if t.size == 0:
        raise ShapeError("no values to score: reference and prediction are empty")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ShapeError("reference or prediction holds NaN/Inf values")
    return t, p


def rmse(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def mard(y_true, y_pred) -> float:
    """Mean absolute relative difference in percent: mean(|ŷ − y| / y) · 100. References must be > 0."""
    t, p = _pair(y_true, y_pred)
    if (t <= 0).any():
        raise ShapeError(f"MARD needs positive references; found {int((t <= 0).sum())} values <= 0")
    return float(np.mean(np.abs(p - t) / t) * 100.0)


def r2(y_true, y_pred) -> float:
    """Coefficient of determination 1 − SS_res/SS_tot (NaN when the reference is constant)."""
    t, p = _pair(y_true, y_pred)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return float(1.0 - np.sum((p - t) ** 2) / ss_tot)


def clarke_zones(y_true, y_pred) -> np.ndarray:
    """Clarke error grid zone ('A'..'E') of each (reference, prediction) pair in mg/dL."""
    r, p = _pair(y_true, y_pred)
    a = ((r <= 70) & (p <= 70)) | ((p <= 1.2 * r) & (p >= 0.8 * r))
    e = ((r >= 180) & (p <= 70)) | ((r <= 70) & (p >= 180))
    c = (((r >= 70) & (r <= 290)) & (p >= r + 110)) | (((r >= 130) & (r <= 180)) & (p <= 1.4 * r - 182))
    d = ((r >= 240) & (p >= 70) & (p <= 180)) | ((r <= 175 / 3) & (p >= 70) & (p <= 180)) | (
        (r >= 175 / 3) & (r <= 70) & (p >= 1.2 * r))
    return np.select([a, e, c, d], ["A", "E", "C", "D"], default="B")


# Parkes type 1 boundaries (reference x, prediction y) in mg/dL. Upper lines are y(x), lower lines x(y).
PARKES_T1_UPPER = (
    ((0, 50), (30, 50), (140, 170), (280, 380), (430, 550)),      # A | B
    ((0, 60), (30, 60), (50, 80), (70, 110), (260, 550)),         # B | C
    ((0, 100), (25, 100), (50, 125), (80, 215), (125, 550)),      # C | D
    ((0, 150), (35, 155), (50, 550)),                              # D | E
)
PARKES_T1_LOWER = (
    ((50, 0), (50, 30), (170, 145), (385, 300), (550, 450)),      # A | B
    ((120, 0), (120, 30), (260, 130), (550, 250)),                # B | C
    ((250, 0), (250, 40), (550, 150)),                            # C | D
)


def _polyline(xp: np.ndarray, fp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Piecewise-linear through the vertices, extended linearly beyond the last one (flat before the first)."""
    out = np.interp(x, xp, fp)
    slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    beyond = x > xp[-1]
    out[beyond] = fp[-1] + slope * (x[beyond] - xp[-1])
    return out


def parkes_zones(y_true, y_pred) -> np.ndarray:
    """Parkes (consensus) error grid zone ('A'..'E') for type 1 diabetes of each pair in mg/dL."""
    r, p = _pair(y_true, y_pred)
    level = np.zeros(r.shape, dtype=np.int64)
    for k, line in enumerate(PARKES_T1_UPPER, start=1):
        v = np.asarray(line, dtype=np.float64)
        level = np.where(p > _polyline(v[:, 0], v[:, 1], r), np.maximum(level, k), level)
    for k, line in enumerate(PARKES_T1_LOWER, start=1):
        v = np.asarray(line, dtype=np.float64)  # monotone in y: read the boundary as x(y)
        level = np.where(r > _polyline(v[:, 1], v[:, 0], p), np.maximum(level, k), level)
    return np.asarray(ZONES)[level]


def zone_percentages(zones: np.ndarray) -> dict[str, float]:
    """Percent of pairs in each zone A..E."""
    z = np.asarray(zones)
    return {k: float(np.mean(z == k) * 100.0) for k in ZONES}


def iso15197(y_true, y_pred) -> dict[str, float | bool]:
    """ISO 15197:2013 accuracy: % within ±15 mg/dL (<100) / ±15% (≥100), % Parkes A+B, and pass/fail."""
    t, p = _pair(y_true, y_pred)
    ok = np.where(t < 100, np.abs(p - t) <= 15.0, np.abs(p - t) <= 0.15 * t)
    within = float(ok.mean() * 100.0)
    pz = zone_percentages(parkes_zones(t, p))
    ab = pz["A"] + pz["B"]
    return {"within_15": within, "parkes_ab": ab, "passed": bool(within >= 95.0 and ab >= 99.0)}


@dataclass
class GlucoseMetrics:
    """All scores of one prediction set. Clinical fields are None when ``clinical=False`` (non-blood units)."""

    n: int
    rmse: float
    mae: float
    r2: float
    mard: float | None = None
    clarke: dict[str, float] | None = None
    parkes: dict[str, float] | None = None
    iso15197: dict[str, float | bool] | None = None

    @property
    def clarke_a(self) -> float | None:
        return None if self.clarke is None else self.clarke["A"]

    @property
    def clarke_ab(self) -> float | None:
        return None if self.clarke is None else self.clarke["A"] + self.clarke["B"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clarke_a"], d["clarke_ab"] = self.clarke_a, self.clarke_ab
        return d


def evaluate_predictions(y_true, y_pred, clinical: bool = True) -> GlucoseMetrics:
    """Score predictions. ``clinical=True`` (mg/dL blood glucose) adds MARD, Clarke, Parkes and ISO 15197;
    with ``clinical=False`` (e.g. g/L fermentation broth) MARD is still given when all references are > 0."""
    t, p = _pair(y_true, y_pred)
    m = GlucoseMetrics(n=int(t.size), rmse=rmse(t, p), mae=mae(t, p), r2=r2(t, p))
    if (t > 0).all():
        m.mard = mard(t, p)
    if clinical:
        m.clarke = zone_percentages(clarke_zones(t, p))
        m.parkes = zone_percentages(parkes_zones(t, p))
        m.iso15197 = iso15197(t, p)
    return m

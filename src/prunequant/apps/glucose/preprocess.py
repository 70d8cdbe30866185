"""Spectral preprocessing in NumPy (for PLS and for data preparation).

The same steps run inside the LSTM model as fixed torch layers (:mod:`.model`), with identical results, so the PLS
baseline and the network see the same preprocessing:

1. ``linear_correction``: subtract the straight line through the first and last point of each spectrum (removes
   offset and tilt of the baseline);
2. ``snv``: standard normal variate, per spectrum ``(x − mean) / std``;
3. ``savgol``: Savitzky–Golay smoothing / derivative (``scipy.signal.savgol_filter``, ``mode="mirror"`` — the
   edge rule the in-model convolution reproduces with reflect padding);
4. ``pool``: average of non-overlapping blocks of ``pool`` points (shortens a long spectrum for the LSTM).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import savgol_filter

from ...errors import ConfigError, ShapeError


def linear_correction(x: np.ndarray) -> np.ndarray:
    """Subtract the line through the first and last point of each spectrum (last axis)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.linspace(0.0, 1.0, x.shape[-1])
    return x - (x[..., :1] + (x[..., -1:] - x[..., :1]) * t)


def snv(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Standard normal variate along the last axis. A flat (zero-variance) spectrum is an error, not a NaN."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=-1, keepdims=True)
    flat = (sd[..., 0] <= eps)
    if flat.any():
        idx = np.argwhere(flat)[0].tolist()
        raise ShapeError(f"SNV: spectrum {idx} has zero variance (a flat or blank recording)")
    return (x - x.mean(axis=-1, keepdims=True)) / sd


def check_savgol(window: int, polyorder: int, deriv: int) -> None:
    if window < 3 or window % 2 == 0:
        raise ConfigError(f"Savitzky-Golay window must be odd and >= 3, got {window}")
    if not 0 <= polyorder < window:
        raise ConfigError(f"Savitzky-Golay polyorder must be in [0, window), got {polyorder} for window {window}")
    if not 0 <= deriv <= polyorder:
        raise ConfigError(f"Savitzky-Golay deriv must be in [0, polyorder], got {deriv} (polyorder {polyorder})")


def savgol(x: np.ndarray, window: int, polyorder: int = 2, deriv: int = 0, axis: int = -1) -> np.ndarray:
    """Savitzky–Golay filter (scipy, mirror edges) along ``axis``; unit sample spacing."""
    check_savgol(window, polyorder, deriv)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] < window:
        raise ShapeError(f"Savitzky-Golay window {window} is longer than the signal ({x.shape[axis]} points)")
    return savgol_filter(x, window, polyorder, deriv=deriv, axis=axis, mode="mirror")


def pool(x: np.ndarray, factor: int) -> np.ndarray:
    """Mean of non-overlapping blocks of ``factor`` points along the last axis (a trailing remainder is dropped)."""
    if factor <= 1:
        return np.asarray(x, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1] // factor
    if n == 0:
        raise ShapeError(f"pool factor {factor} is larger than the spectrum ({x.shape[-1]} points)")
    return x[..., : n * factor].reshape(*x.shape[:-1], n, factor).mean(axis=-1)


@dataclass
class SpectralPreprocessing:
    """Which preprocessing steps run on a spectrum (in the order listed in the module doc).

    ``sg_window = 0`` switches the Savitzky–Golay step off.
    """

    linear_correction: bool = False
    snv: bool = False
    sg_window: int = 0
    sg_polyorder: int = 2
    sg_deriv: int = 0
    pool: int = 1

    def __post_init__(self):
        if self.sg_window:
            check_savgol(self.sg_window, self.sg_polyorder, self.sg_deriv)
        if self.pool < 1:
            raise ConfigError(f"pool must be >= 1, got {self.pool}")

    def out_length(self, length: int) -> int:
        return length // self.pool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to spectra ``(..., L)``; returns ``(..., L // pool)``."""
        x = np.asarray(x, dtype=np.float64)
        if self.linear_correction:
            x = linear_correction(x)
        if self.snv:
            x = snv(x)
        if self.sg_window:
            x = savgol(x, self.sg_window, self.sg_polyorder, self.sg_deriv)
        return pool(x, self.pool)

    def to_dict(self) -> dict:
        return asdict(self)

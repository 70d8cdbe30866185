"""Load a user's own tensors from CSV or NPZ with shape and dtype validation.

CSV: one sample per row, numeric columns; the target column is chosen by name (header) or index.
NPZ: arrays ``x`` and ``y`` (names configurable).
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import ShapeError, StorageError


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise ShapeError(f"{path}: {what} holds {int(bad.sum())} NaN/Inf values (first at row {r})")


def _read_csv(path: Path, target: str | int | None) -> tuple[np.ndarray, np.ndarray | None]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise ShapeError(f"{path}: the CSV file is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
    if not rows:
        raise ShapeError(f"{path}: the CSV file has a header but no data rows")
    width = len(header) if header else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            line = i + (2 if header else 1)
            raise ShapeError(f"{path}: ragged CSV, line {line} has {len(r)} columns, expected {width}")
    try:
        data = np.array([[float(c) if c.strip() else np.nan for c in r] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise ShapeError(f"{path}: non-numeric value in CSV ({e})") from None
    if target is None:
        return data, None
    if isinstance(target, str):
        if header is None or target not in header:
            raise ShapeError(f"{path}: target column {target!r} not found (header: {header})")
        t = header.index(target)
    else:
        t = target if target >= 0 else width + target
        if not 0 <= t < width:
            raise ShapeError(f"{path}: target column index {target} out of range for {width} columns")
    return np.delete(data, t, axis=1), data[:, t]


def load_tensors(path: str | Path, target: str | int | None = -1, x_key: str = "x", y_key: str = "y",
                 feature_shape: tuple[int, ...] | None = None, y_dtype: torch.dtype = torch.float32) -> TensorDataset:
    """Load features (and targets) from ``path`` (.csv or .npz) into a TensorDataset.

    ``feature_shape`` reshapes each sample (e.g. (1, 8, 8)) and is checked against the column count.
    Raises ShapeError/StorageError naming the file for NaNs, ragged rows, wrong shapes, missing keys.
    """
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y = _read_csv(path, target)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if x_key not in z:
                    raise ShapeError(f"{path}: array {x_key!r} missing (has {list(z.keys())})")
                x = np.asarray(z[x_key])
                y = np.asarray(z[y_key]) if y_key in z else None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            if isinstance(e, ShapeError):
                raise
            raise StorageError(f"{path}: not a readable NPZ file ({e})") from None
        if x.dtype.kind not in "fiub":
            raise ShapeError(f"{path}: {x_key!r} has non-numeric dtype {x.dtype}")
        x = x.astype(np.float64)
    else:
        raise StorageError(f"{path}: unsupported extension {suffix!r}; use .csv or .npz")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ShapeError(f"{path}: expected at least one sample with features, got array of shape {x.shape}")
    _check_finite(x, path, "features")
    if y is not None:
        if len(y) != len(x):
            raise ShapeError(f"{path}: {len(x)} samples but {len(y)} targets")
        _check_finite(np.asarray(y, dtype=np.float64), path, "targets")
    if feature_shape is not None:
        n = int(np.prod(x.shape[1:]))
        if int(np.prod(feature_shape)) != n:
            raise ShapeError(f"{path}: samples have {n} values, cannot reshape to {tuple(feature_shape)}")
        x = x.reshape((len(x), *feature_shape))
    xt = torch.from_numpy(x.astype(np.float32))
    if y is None:
        return TensorDataset(xt)
    return TensorDataset(xt, torch.as_tensor(np.asarray(y), dtype=y_dtype))

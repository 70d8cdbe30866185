"""Real infrared fermentation spectra with HPLC glucose references, shipped in the ``chemotools`` package.

* train: 21 lab standards, 1,047 wavenumbers (428-1833 cm^-1, mid-IR), glucose 0-38 g/L.
* test: 1,629 on-line spectra of a lignocellulose ethanol fermentation, one every 1.25 min (an inference from the
  numbers: 1,629 x 1.25 min = 33.9 h, the HPLC time range), plus 34 HPLC rows with ``time`` in hours.
  Each HPLC row is matched to the spectrum nearest to its time: index = round(time * 60 / 1.25). The last three
  on-line rows of the file are blank placeholders (every value 1.0); ``valid`` marks the real spectra and an HPLC
  time that lands on a blank row is matched to the nearest earlier real spectrum instead.
Source: Cabaneros Lopez et al., Biotechnology and Bioengineering (2021). Units are g/L of broth, not blood.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import StorageError

SPECTRUM_INTERVAL_MIN = 1.25


@dataclass
class FermentationData:
    wavenumbers: np.ndarray       # (1047,)
    x_train: np.ndarray           # (21, 1047)
    y_train: np.ndarray           # (21,) g/L glucose
    x_test_all: np.ndarray        # (1629, 1047) every on-line spectrum, time-ordered
    test_time_h: np.ndarray       # (34,) HPLC sample times
    test_index: np.ndarray        # (34,) index into x_test_all nearest to each HPLC time (real spectra only)
    valid: np.ndarray             # (1629,) bool: False for the blank placeholder rows
    y_test: np.ndarray            # (34,) g/L glucose

    @property
    def x_test(self) -> np.ndarray:
        return self.x_test_all[self.test_index]

    def datasets(self) -> tuple[TensorDataset, TensorDataset]:
        f = lambda a: torch.tensor(np.array(a), dtype=torch.float32)  # noqa: E731
        return TensorDataset(f(self.x_train), f(self.y_train)), TensorDataset(f(self.x_test), f(self.y_test))


def fermentation_data() -> FermentationData:
    """Load the chemotools fermentation spectra (offline, from the installed package)."""
    try:
        from chemotools.datasets import load_fermentation_test, load_fermentation_train
    except ImportError as e:  # pragma: no cover - chemotools is a core dependency
        raise StorageError(f"chemotools is required for the fermentation data ({e})") from None
    xtr, ytr = load_fermentation_train()
    xte, yte = load_fermentation_test()
    wn = np.asarray([float(c) for c in xtr.columns])
    x_all = xte.to_numpy(dtype=np.float64)
    t = yte["time"].to_numpy(dtype=np.float64)
    idx = np.clip(np.rint(t * 60.0 / SPECTRUM_INTERVAL_MIN).astype(int), 0, len(x_all) - 1)
    valid = x_all.std(axis=1) > 0
    real = np.flatnonzero(valid)
    # nearest earlier real spectrum for an index that lands on a blank row (vectorized)
    pos = np.searchsorted(real, idx, side="right") - 1
    idx = np.where(valid[idx], idx, real[np.clip(pos, 0, len(real) - 1)])
    return FermentationData(wavenumbers=wn, x_train=xtr.to_numpy(dtype=np.float64),
                            y_train=ytr["glucose"].to_numpy(dtype=np.float64), x_test_all=x_all, valid=valid,
                            test_time_h=t, test_index=idx, y_test=yte["glucose"].to_numpy(dtype=np.float64))

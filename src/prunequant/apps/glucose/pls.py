"""PLS regression baseline (scikit-learn) with the number of components chosen by cross-validation.

The baseline sees the same preprocessing as the LSTM (:class:`.preprocess.SpectralPreprocessing`, applied along the
last axis) and the same split. Inputs with more than two dimensions (e.g. windows (N, T, C)) are flattened per sample
after preprocessing. Cross-validation is grouped when ``groups`` is given (subject-wise folds for in-vivo style
data, so a subject never sits in both the fitting and the scoring part of a fold), else shuffled K-fold.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import GroupKFold, KFold

from ...errors import ConfigError, ShapeError
from .preprocess import SpectralPreprocessing


@dataclass
class PLSBaseline:
    """``fit`` → ``predict``; after fitting, ``n_components`` and ``cv_rmse`` (per candidate k) are set."""

    preprocessing: SpectralPreprocessing = field(default_factory=SpectralPreprocessing)
    max_components: int = 15
    folds: int = 5
    seed: int = 0
    n_components: int | None = None
    cv_rmse: dict[int, float] = field(default_factory=dict)
    model: PLSRegression | None = None

    def _features(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2:
            raise ShapeError(f"PLS expects (N, features...) inputs, got shape {x.shape}")
        if x.ndim == 3 and x.shape[-1] == 1:  # (N, L, 1) spectra as the LSTM reads them
            x = x[..., 0]
        z = self.preprocessing(x)
        return z.reshape(len(z), -1)

    def fit(self, x, y, groups=None, augment: Callable | None = None) -> PLSBaseline:
        """Fit; ``augment(x, y, seed) -> (x', y')`` (e.g. :class:`.data.SpectralAugmentation`) enlarges the
        training part of every fold and the final training set, never the scored part."""
        x = np.asarray(x, dtype=np.float64)
        z = self._features(x)
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(z) != len(y):
            raise ShapeError(f"PLS: {len(z)} samples but {len(y)} targets")
        if len(z) < 3:
            raise ShapeError(f"PLS needs at least 3 samples, got {len(z)}")
        if groups is not None:
            groups = np.asarray(groups)
            n_groups = len(np.unique(groups))
            if n_groups < 2:
                raise ConfigError("grouped cross-validation needs at least 2 groups")
            splits = list(GroupKFold(n_splits=min(self.folds, n_groups)).split(z, y, groups))
        else:
            splits = list(KFold(n_splits=min(self.folds, len(z)), shuffle=True, random_state=self.seed).split(z))
        def train_part(idx, seed):
            if augment is None:
                return z[idx], y[idx]
            xa, ya = augment(x[idx], y[idx], seed)
            return self._features(xa), np.asarray(ya, dtype=np.float64).ravel()

        folds = [(train_part(tr, self.seed + 1 + i), te) for i, (tr, te) in enumerate(splits)]
        k_max = max(1, min(self.max_components, z.shape[1], min(len(zt) for (zt, _), _ in folds) - 1))
        pred = {k: np.empty_like(y) for k in range(1, k_max + 1)}
        for (zt, yt), te in folds:
            m = PLSRegression(n_components=k_max, scale=False).fit(zt, yt)
            # predictions for every k from one fit: truncate the rotations
            xc = z[te] - m._x_mean
            for k in range(1, k_max + 1):
                coef = m.x_rotations_[:, :k] @ m.y_loadings_[:, :k].T
                pred[k][te] = (xc @ coef).ravel() + m._y_mean
        self.cv_rmse = {k: float(np.sqrt(np.mean((p - y) ** 2))) for k, p in pred.items()}
        self.n_components = min(self.cv_rmse, key=self.cv_rmse.get)
        self.model = PLSRegression(n_components=self.n_components, scale=False).fit(*train_part(np.arange(len(z)),
                                                                                               self.seed))
        return self

    def predict(self, x) -> np.ndarray:
        if self.model is None:
            raise ConfigError("PLSBaseline.predict called before fit")
        return self.model.predict(self._features(x)).ravel()

    @property
    def size_bytes(self) -> int:
        """float32 bytes of what inference needs: the regression vector, the input mean and the intercept."""
        if self.model is None:
            return 0
        return int((self.model.coef_.size + self.model._x_mean.size + 1) * 4)

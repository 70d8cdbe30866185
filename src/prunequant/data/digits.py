"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes) as the default image task.

Split (fixed, stratified, seed 0 by default): 60% train (1,078), 20% val (359), 20% test (360).
Pixels are scaled from 0..16 to [0, 1]; images are shaped (N, 1, 8, 8).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

DIGITS_SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}


def digits_splits(seed: int = 0) -> dict[str, TensorDataset]:
    """Return train/val/test TensorDatasets of (x: float32 (N,1,8,8) in [0,1], y: int64)."""
    ds = load_digits()
    x = (ds.images.astype(np.float32) / 16.0)[:, None]
    y = ds.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=seed)
    va, te = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return {k: TensorDataset(torch.from_numpy(x[i]), torch.from_numpy(y[i])) for k, i in
            (("train", tr), ("val", va), ("test", te))}


def digits_loaders(batch_size: int = 64, seed: int = 0, split_seed: int = 0):
    """Return (train, val, test) DataLoaders; the train loader shuffles with a generator seeded by ``seed``."""
    s = digits_splits(split_seed)
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(s["train"], batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(s["val"], batch_size=256),
            DataLoader(s["test"], batch_size=256))

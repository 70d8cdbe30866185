"""Fashion-MNIST (Xiao et al. 2017): 60,000 training + 10,000 test 28x28 grayscale images, 10 classes.

Read offline from the four IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``) in a directory given by the ``root``
argument, else the ``PRUNEQUANT_FASHION_MNIST`` environment variable, else ``/usr/share/datasets/fashion-mnist``
(where Debian's ``dataset-fashion-mnist`` package puts them: ``apt-get install dataset-fashion-mnist`` or
``make data``). Nothing is downloaded. Pixels are scaled to [0, 1] and normalised with the training set's mean
and std (0.2860, 0.3530), images shaped (N, 1, 28, 28).
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..errors import StorageError

ENV_VAR = "PRUNEQUANT_FASHION_MNIST"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
MEAN, STD = 0.2860, 0.3530
HOW_TO_GET = (f"install Debian's 'dataset-fashion-mnist' package (`make data`, or `apt-get install "
              f"dataset-fashion-mnist`; files land in {DEFAULT_DIR}), or put the four IDX files "
              f"({', '.join(FILES.values())}, optionally .gz) in a directory and pass root=... or set {ENV_VAR}")
_IDX_DTYPES = {0x08: np.uint8}


@dataclass
class FashionMNIST:
    """Fashion-MNIST tensors: ``x_*`` float32 (N, 1, 28, 28) normalised, ``y_*`` int64 (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    root: Path

    def datasets(self) -> dict[str, TensorDataset]:
        return {"train": TensorDataset(self.x_train, self.y_train), "test": TensorDataset(self.x_test, self.y_test)}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array; unsigned-byte data only (what (Fashion-)MNIST uses).

    Raises StorageError naming the file if it is missing, truncated or not an unsigned-byte IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: not found")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise StorageError(f"{path}: cannot read IDX file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise StorageError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise StorageError(f"{path}: IDX data type 0x{code:02x} is not supported (only unsigned bytes, 0x08)")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise StorageError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    n = int(np.prod(shape))
    data = raw[4 + 4 * ndim:]
    if len(data) != n:
        raise StorageError(f"{path}: IDX header says {n} values of shape {tuple(shape)}, file holds {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write an unsigned-byte array as an IDX file (gzip if ``path`` ends in .gz). Used by tests."""
    path = Path(path)
    a = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    tmp = path.with_name(path.name + ".tmp")
    with (gzip.open(tmp, "wb") if path.suffix == ".gz" else open(tmp, "wb")) as f:
        f.write(payload)
    os.replace(tmp, path)
    return path


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """The directory the files are read from: ``root``, else $PRUNEQUANT_FASHION_MNIST, else the Debian path."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_DIR


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise StorageError(f"Fashion-MNIST file {stem}[.gz] not found in {root}; {HOW_TO_GET}")


def fashion_mnist(root: str | Path | None = None, *, normalize: bool = True) -> FashionMNIST:
    """Load Fashion-MNIST (60k train, 10k test) from IDX files.

    Args:
        root: directory with the IDX files; default $PRUNEQUANT_FASHION_MNIST or /usr/share/datasets/fashion-mnist.
        normalize: subtract the training mean and divide by its std (else pixels in [0, 1]).

    Returns:
        :class:`FashionMNIST` with float32 images (N, 1, 28, 28) and int64 labels.

    Example:
        >>> from prunequant.data import fashion_mnist
        >>> ds = fashion_mnist()  # doctest: +SKIP
        >>> ds.x_train.shape  # doctest: +SKIP
        torch.Size([60000, 1, 28, 28])
    """
    d = fashion_mnist_dir(root)
    if not d.is_dir():
        raise StorageError(f"Fashion-MNIST directory {d} not found; {HOW_TO_GET}")
    arrays = {k: read_idx(_find(d, stem)) for k, stem in FILES.items()}
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise StorageError(f"{d}: {split} images {x.shape} and labels {y.shape} do not match "
                               "(expected (N, H, W) and (N,))")
        if y.size and int(y.max()) >= len(CLASSES):
            raise StorageError(f"{d}: {split} labels hold class {int(y.max())}; Fashion-MNIST has 10 classes")
        xt = torch.from_numpy(x.astype(np.float32) / 255.0)[:, None]
        if normalize:
            xt = (xt - MEAN) / STD
        out += [xt, torch.from_numpy(y.astype(np.int64))]
    return FashionMNIST(*out, root=d)


def fashion_mnist_loaders(root: str | Path | None = None, *, batch_size: int = 128, seed: int = 0,
                          train_size: int | None = None, test_size: int | None = None):
    """(train, test) DataLoaders; ``train_size``/``test_size`` take a fixed, class-balanced-by-chance random subset
    (seeded by ``seed``) for quick runs. The train loader shuffles with a generator seeded by ``seed``."""
    ds = fashion_mnist(root)
    g = torch.Generator().manual_seed(seed)
    xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if train_size is not None and train_size < len(ytr):
        i = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[:train_size]
        xtr, ytr = xtr[i], ytr[i]
    if test_size is not None and test_size < len(yte):
        xte, yte = xte[:test_size], yte[:test_size]
    return (DataLoader(TensorDataset(xtr, ytr), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(xte, yte), batch_size=512))

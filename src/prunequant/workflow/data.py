"""Where the data comes from, and what the task is.

A data source is a file or folder per split: NPZ (arrays ``x`` and ``y``), CSV (last column the target, or the
column named by ``target``), a folder of images by class (``root/<class>/<image>``, torchvision ImageFolder
style; images read with Pillow if installed, ``.npy`` arrays always), or a bundled set (``digits``). The task
(``classification`` or ``regression``) picks the loss and the reported metric (accuracy / RMSE).

``check_data_source`` validates paths and formats before any training; ``load_split`` reads one split.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..errors import ConfigError, ShapeError, StorageError

BUNDLED = ("digits",)
TASKS = ("classification", "regression")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Task:
    """Loss and metric of a task. ``metric_name`` is reported; ``higher_is_better`` says which way is good."""

    name: str
    loss_name: str
    metric_name: str

    @property
    def higher_is_better(self) -> bool:
        return self.metric_name == "accuracy"

    def loss_fn(self) -> Callable[..., torch.Tensor]:
        return {"cross_entropy": F.cross_entropy, "mse": _mse, "l1": _l1}[self.loss_name]

    def train_metric(self) -> Callable[..., float]:
        """Per-batch metric for training logs (higher is better: accuracy, or minus the RMSE)."""
        if self.metric_name == "accuracy":
            return lambda out, y: float((out.argmax(1) == y).float().mean())
        return lambda out, y: -float(torch.sqrt(((out.reshape(y.shape) - y) ** 2).mean()))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: Any) -> float:
        """The metric over the whole split (accuracy or RMSE, summed over samples, not averaged per batch)."""
        model.eval()
        total, n, sq = 0.0, 0, 0.0
        for batch in data:
            x, y = batch[0], batch[1]
            out = model(x)
            if hasattr(out, "logits"):
                out = out.logits
            if self.metric_name == "accuracy":
                total += float((out.argmax(1) == y).sum())
            elif self.metric_name == "mae":
                total += float((out.reshape(y.shape) - y).abs().sum())
            else:
                sq += float(((out.reshape(y.shape).float() - y.float()) ** 2).sum())
            n += len(y)
        if n == 0:
            raise ShapeError("evaluation data is empty")
        if self.metric_name == "accuracy" or self.metric_name == "mae":
            return total / n
        return math.sqrt(sq / n)


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.reshape(y.shape), y)


def _l1(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(out.reshape(y.shape), y)


def make_task(task: str, loss: str | None = None, metric: str | None = None) -> Task:
    """``Task`` for ``classification`` (cross-entropy, accuracy) or ``regression`` (MSE, RMSE); ``loss`` and
    ``metric`` override (``cross_entropy``/``mse``/``l1``; ``accuracy``/``rmse``/``mae``)."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    default_loss, default_metric = ("cross_entropy", "accuracy") if task == "classification" else ("mse", "rmse")
    loss, metric = loss or default_loss, metric or default_metric
    if loss not in ("cross_entropy", "mse", "l1"):
        raise ConfigError(f"loss must be cross_entropy, mse or l1, got {loss!r}")
    if metric not in ("accuracy", "rmse", "mae"):
        raise ConfigError(f"metric must be accuracy, rmse or mae, got {metric!r}")
    if task == "regression" and (loss == "cross_entropy" or metric == "accuracy"):
        raise ConfigError(f"regression cannot use loss {loss!r} / metric {metric!r}")
    return Task(task, loss, metric)


@dataclass(frozen=True)
class DataSource:
    """Validated data: a path (or bundled name) per split, the target column, the task and the sample shape."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    task: str = "classification"
    target: str | None = None
    input_shape: tuple[int, ...] | None = None
    batch_size: int = 64
    loss: str | None = None
    metric: str | None = None
    splits_found: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"train": self.train, "val": self.val, "test": self.test, "task": self.task, "target": self.target,
             "input_shape": list(self.input_shape) if self.input_shape else None, "batch_size": self.batch_size,
             "loss": self.loss, "metric": self.metric}
        return {k: v for k, v in d.items() if v is not None}

    @property
    def task_obj(self) -> Task:
        return make_task(self.task, self.loss, self.metric)


def _kind(spec: str) -> str:
    if spec in BUNDLED:
        return "bundled"
    p = Path(spec)
    if not p.exists():
        raise StorageError(f"{p}: not found")
    if p.is_dir():
        return "images"
    if p.suffix.lower() in (".npz", ".csv"):
        return p.suffix.lower()[1:]
    raise StorageError(f"{p}: unsupported data file {p.suffix!r}; use .npz (x, y), .csv, an image folder or "
                       f"{', '.join(BUNDLED)}")


def _check_images(root: Path) -> None:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise StorageError(f"{root}: an image folder needs one sub-folder per class (root/<class>/<image>)")
    files = [f for c in classes for f in (root / c).iterdir() if f.is_file()]
    if not files:
        raise StorageError(f"{root}: the class folders hold no files")
    exts = {f.suffix.lower() for f in files}
    if exts & set(_IMAGE_EXT) and importlib.util.find_spec("PIL") is None:
        raise ConfigError(f"{root}: reading images needs Pillow: pip install 'prunequant[data]' (or store .npy)")
    bad = sorted(exts - set(_IMAGE_EXT) - {".npy"})
    if bad:
        raise StorageError(f"{root}: unsupported files {bad} in the class folders (images or .npy)")


def _check_csv_target(path: Path, target: str | None) -> None:
    if target is None:
        return
    with open(path, newline="") as f:
        header = f.readline().strip().split(",")
    if target not in [h.strip() for h in header]:
        raise ConfigError(f"{path}: target column {target!r} not in the header ({', '.join(header[:20])})")


def check_data_source(train: str | None = None, val: str | None = None, test: str | None = None,
                      task: str = "classification", target: str | None = None,
                      input_shape: tuple[int, ...] | list[int] | None = None, batch_size: int = 64,
                      loss: str | None = None, metric: str | None = None) -> DataSource:
    """Validate the data arguments (paths exist, formats known, target column present, task valid).

    Returns:
        The :class:`DataSource`.

    Raises:
        ConfigError / StorageError: one-line messages naming the file or argument.
    """
    make_task(task, loss, metric)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        if not input_shape or min(input_shape) < 1:
            raise ConfigError(f"input_shape must be positive integers, got {list(input_shape)}")
    if train is None and test is None:
        raise ConfigError("data: give at least train or test (a file, an image folder or a bundled set)")
    found = {}
    for name, spec in (("train", train), ("val", val), ("test", test)):
        if spec is None:
            continue
        k = _kind(str(spec))
        found[name] = k
        if k == "images":
            _check_images(Path(spec))
        elif k == "csv":
            _check_csv_target(Path(spec), target)
        elif k == "bundled" and task != "classification":
            raise ConfigError(f"{spec} is a classification set; task {task!r} does not fit it")
    return DataSource(train, val, test, task, target, input_shape, batch_size, loss, metric, found)


def _read_images(root: Path) -> TensorDataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    xs, ys = [], []
    for label, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if not f.is_file():
                continue
            if f.suffix.lower() == ".npy":
                arr = np.load(f, allow_pickle=False).astype(np.float32)
            else:
                from PIL import Image

                with Image.open(f) as im:
                    im = im.convert("L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB")
                    arr = np.asarray(im, dtype=np.float32) / 255.0
                if arr.ndim == 3:
                    arr = arr.transpose(2, 0, 1)  # HWC -> CHW
            if arr.ndim == 2:
                arr = arr[None]
            if xs and arr.shape != xs[0].shape:
                raise ShapeError(f"{f}: shape {arr.shape} differs from the first image's {xs[0].shape}; resize the "
                                 f"images to one size")
            xs.append(arr)
            ys.append(label)
    x = torch.from_numpy(np.stack(xs))
    if not torch.isfinite(x).all():
        raise ShapeError(f"{root}: images hold NaN/Inf values")
    return TensorDataset(x, torch.tensor(ys, dtype=torch.long))


def load_split(source: DataSource, split: str, seed: int = 0) -> TensorDataset | None:
    """Read one split (``train``/``val``/``test``) of a validated source as a TensorDataset (None if absent)."""
    spec = getattr(source, split)
    if spec is None:
        return None
    k = source.splits_found.get(split) or _kind(spec)
    if k == "bundled":
        from ..data import digits_splits

        return digits_splits(seed)[split]
    if k == "images":
        ds = _read_images(Path(spec))
    else:
        from ..data import load_tensors

        target: str | int | None = source.target if source.target is not None else -1
        ydt = torch.long if source.task == "classification" else torch.float32
        ds = load_tensors(spec, target=target if k == "csv" else -1, feature_shape=None, y_dtype=ydt)
        if len(ds.tensors) < 2:
            raise ShapeError(f"{spec}: no targets (an NPZ needs arrays x and y)")
    if source.input_shape is not None:
        x = ds.tensors[0]
        shape = tuple(source.input_shape)
        per = shape[1:] if len(shape) == x.dim() and shape[0] == 1 else shape
        if int(np.prod(per)) != x[0].numel():
            raise ShapeError(f"{spec}: samples have {x[0].numel()} values, input_shape {list(shape)} needs "
                             f"{int(np.prod(per))}")
        ds = TensorDataset(x.reshape(len(x), *per), *ds.tensors[1:])
    if source.task == "classification":
        y = ds.tensors[1]
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ShapeError(f"{spec}: classification targets must be integer class indices")
            ds = TensorDataset(ds.tensors[0], y.long())
        if (ds.tensors[1] < 0).any():
            raise ShapeError(f"{spec}: negative class index in the targets")
    return ds


def loader(ds: TensorDataset | None, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader | None:
    """A DataLoader over ``ds`` (seeded shuffling) or None."""
    if ds is None:
        return None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g if shuffle else None)

"""Activation range calibration: observers on layer inputs, run over calibration batches.

Methods (per observed tensor, per batch; the batch values are then combined):

* ``"topk_median"`` (paper default, k = 10): the median of the k largest and of the k smallest values of each
  batch, averaged over batches (the reference code's ``act_clip_bounds``).
* ``"percentile"``: the ``percentile`` and ``100 - percentile`` quantiles of each batch, averaged over batches.
* ``"minmax"``: the global minimum and maximum.

A lower bound >= 0 (e.g. after ReLU) gives an unsigned quantizer on [0, r_u]; otherwise symmetric
(:meth:`ActFakeQuant.from_range`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import ConfigError, LayerError, ShapeError

CALIBRATION_METHODS = ("topk_median", "percentile", "minmax")


class RangeObserver:
    """Collects per-batch range statistics of one tensor stream."""

    def __init__(self, method: str = "topk_median", k: int = 10, percentile: float = 99.99):
        if method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
        if method == "topk_median" and (not isinstance(k, int) or k < 1):
            raise ConfigError(f"top-k calibration needs an integer k >= 1, got {k!r}")
        if method == "percentile" and not 50.0 < float(percentile) <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {percentile!r}")
        self.method, self.k, self.percentile = method, k, float(percentile)
        self.lows: list[float] = []
        self.highs: list[float] = []

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        n = flat.numel()
        if n == 0:
            return
        if not bool(torch.isfinite(flat).all()):
            raise LayerError("non-finite activation values seen during calibration")
        if self.method == "minmax":
            lo, hi = flat.min(), flat.max()
        elif self.method == "topk_median":
            k = min(self.k, n)
            hi = torch.quantile(flat.topk(k).values, 0.5)
            lo = -torch.quantile((-flat).topk(k).values, 0.5)
        else:
            k_hi = min(n, max(1, round(n * self.percentile / 100.0)))
            k_lo = min(n, max(1, n - k_hi + 1))
            hi, lo = flat.kthvalue(k_hi).values, flat.kthvalue(k_lo).values
        self.lows.append(float(lo))
        self.highs.append(float(hi))

    def range(self) -> tuple[float, float]:
        if not self.lows:
            raise LayerError("observer saw no data")
        if self.method == "minmax":
            return min(self.lows), max(self.highs)
        return sum(self.lows) / len(self.lows), sum(self.highs) / len(self.highs)


def iter_batches(data, batch_size: int = 32, max_batches: int | None = None) -> Iterator[Tensor]:
    """Yield input tensors from a Tensor (split into ``batch_size`` chunks), a TensorDataset/DataLoader or any
    iterable of tensors / (input, target) tuples."""
    if data is None:
        raise ConfigError("activation quantization needs calibration_data (a Tensor or an iterable of batches)")
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ShapeError(f"calibration tensor must have a non-empty batch dimension, got {tuple(data.shape)}")
        source: Iterable = data.split(batch_size)
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        source = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        source = data
    count = 0
    for batch in source:
        if max_batches is not None and count >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise ShapeError(f"calibration batch must be a Tensor or (input, ...) tuple, got {type(x).__name__}")
        count += 1
        yield x
    if count == 0:
        raise ConfigError("calibration_data yielded no batches")


@torch.no_grad()
def calibrate_ranges(model: nn.Module, modules: dict[str, nn.Module], data, *, method: str = "topk_median",
                     k: int = 10, percentile: float = 99.99, batch_size: int = 32,
                     max_batches: int | None = None) -> dict[str, tuple[float, float]]:
    """Run ``model`` over ``data`` and return ``{name: (lo, hi)}`` of the first input of each module that
    received a Tensor input."""
    observers = {name: RangeObserver(method, k, percentile) for name in modules}
    handles = []

    def make_hook(obs: RangeObserver):
        def hook(_module, args):
            if args and isinstance(args[0], Tensor):
                obs.observe(args[0])
        return hook

    for name, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(make_hook(observers[name])))
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for x in iter_batches(data, batch_size, max_batches):
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # modules that never saw a plain Tensor input (unused, or fed a PackedSequence) are left out
    return {name: obs.range() for name, obs in observers.items() if obs.lows}
